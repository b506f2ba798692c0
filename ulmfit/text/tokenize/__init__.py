"""Word and subword tokenization: fastai's rules, a vectorised word splitter, the Rust tokenizer."""
