"""Tiny offline building blocks shared by the training, evaluation and serving tests."""

from __future__ import annotations

import shutil
from pathlib import Path

from pgmre.encoders.text import resolve_text_encoder

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def make_tiny_bert(
    directory: Path, hidden: int = 32, layers: int = 2, heads: int = 2, seed: int = 0, dropout: float = 0.1
) -> Path:
    """A randomly initialised 2-layer BERT with the bundled MiniLM (bert-base-uncased) tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    torch.manual_seed(seed)
    source = Path(resolve_text_encoder("bundled:minilm"))
    config = BertConfig(
        vocab_size=30522,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=2 * hidden,
        max_position_embeddings=256,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
    )
    BertModel(config).save_pretrained(directory)
    for name in TOKENIZER_FILES:
        if (source / name).exists():
            shutil.copy(source / name, directory / name)
    return directory


def make_tiny_vit(directory: Path, image_size: int = 32, hidden: int = 16, seed: int = 0) -> Path:
    """A randomly initialised 1-layer ViT and its image processor (the image-source encoder in tests)."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    directory = Path(directory)
    if (directory / "config.json").exists():
        return directory
    torch.manual_seed(seed)
    config = ViTConfig(
        image_size=image_size,
        patch_size=8,
        hidden_size=hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
    )
    ViTModel(config).save_pretrained(directory)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(directory)
    return directory
