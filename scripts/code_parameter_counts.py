"""CoDe's trainable parameters at ViT-B/16 size, against the counts of the official module tree.

The reference notes counted the official ``ImageTextCoDecomposition`` (built from its source with
random CLIP weights): 17,519,113 trainable parameters in the decoder-only phase (steps < 30k) and
24,606,985 after the copied block unfreezes. This builds textseg's CoDe on a random CLIP of
ViT-B/16's shape (saved to a temporary folder; nothing is downloaded) and counts the parameters
that train at step 0 and at step 30000, by group. Run (about a minute, 1.3 GB of temporary files):

    python scripts/code_parameter_counts.py

Measured (torch 2.14.1, transformers 5.23, CPU):

    step 0:     17519113 trainable (official 17519113)
    step 30000: 24606985 trainable (official 24606985)
"""

from __future__ import annotations

import tempfile
from collections import Counter

from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

from textseg.methods.code import SPEC
from textseg.testing.tiny_clip import build_tiny_clip

OFFICIAL = {0: 17_519_113, 30000: 24_606_985}


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        tiny = build_tiny_clip(f"{folder}/tokenizer")  # any CLIP tokenizer will do for counting
        config = CLIPConfig(
            text_config={"vocab_size": 49408, "hidden_size": 512, "intermediate_size": 2048,
                         "num_hidden_layers": 12, "num_attention_heads": 8, "hidden_act": "quick_gelu"},
            vision_config={"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
                           "num_attention_heads": 12, "image_size": 224, "patch_size": 16,
                           "hidden_act": "quick_gelu"},
            projection_dim=512,
        )  # fmt: skip
        CLIPModel(config).save_pretrained(f"{folder}/vitb16")
        CLIPTokenizer.from_pretrained(tiny).save_pretrained(f"{folder}/vitb16")
        method = SPEC.create("paper", {"clip": f"{folder}/vitb16"})
        for step, official in OFFICIAL.items():
            method.on_train_step(step)
            groups: Counter[str] = Counter()
            for name, param in method.named_parameters():
                if param.requires_grad:
                    groups[name.split(".")[0]] += param.numel()
            total = sum(groups.values())
            print(f"step {step}: {total} trainable (official {official})  {dict(groups)}")


if __name__ == "__main__":
    main()
