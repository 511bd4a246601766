"""The reference receiver: the cloud side of the sync contract, for tests, demos and small sites."""
