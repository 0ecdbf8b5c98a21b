"""A tiny shop: orders, receipts and stock, with background jobs in corequeue."""
