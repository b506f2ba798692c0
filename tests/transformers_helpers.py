"""A tiny GPT-2 checkpoint with a word-level fast tokenizer, saved to a folder (no download)."""

from pathlib import Path


def word_gpt2(folder: Path, words: list[str], n_positions: int = 32) -> Path:
    """Save a 2-layer GPT-2 (width 32) and a whitespace word tokenizer over `words` to `folder`."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["<unk>", "<eos>"] + list(words))}
    tk = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", eos_token="<eos>")
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_embd=32, n_layer=2, n_head=2, vocab_size=len(vocab), n_positions=n_positions)
    transformers.GPT2LMHeadModel(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
