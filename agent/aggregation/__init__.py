"""Aggregation: items into boxes, boxes into cases, cases into pallets, each link proven and journaled."""
