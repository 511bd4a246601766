"""Coder (inkjet/laser/TTO) drivers, one module per wire protocol, behind one interface (base.py)."""
