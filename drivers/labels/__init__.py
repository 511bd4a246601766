"""Label printers: parent labels (case, SSCC pallet) printed on demand."""
