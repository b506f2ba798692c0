"""Reading text files and tables, LM token streams, classification batches, the token cache."""
