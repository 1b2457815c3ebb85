"""Which weight inheritance starts the ALBERT student closest to its teacher, before any training.

For each embedding width E and each choice of the shared layer (the average of the teacher's
layers, or one of them), the student is built from the packaged teacher (all-MiniLM-L6-v2) and
compared with it on real held-out sentences (SST-2 test sentences and Amazon reviews from
../shared/data): mean cosine of their sentence embeddings and mean squared error of the last
hidden states. A randomly initialised student is the floor.

    python benchmarks/student_init.py          # ~4 minutes on 2 cores

Writes benchmarks/results/student_init.{json,md}.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import markdown_table, write_results  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def held_out_texts(count: int) -> list[str]:
    """Half SST-2 test sentences, half All_Beauty reviews (first in file order)."""
    sst = [line.split("\t")[0] for line in
           (DATA / "sst2-glue" / "dev.tsv").read_text().splitlines()[1:]][: count // 2]
    reviews = []
    with gzip.open(DATA / "amazon-reviews-2018-5core-small" / "All_Beauty_5.json.gz", "rt") as f:
        for line in f:
            text = json.loads(line).get("reviewText")
            if text and len(text.split()) >= 5:
                reviews.append(text)
            if len(reviews) >= count - len(sst):
                break
    return sst + reviews


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--sequence-length", type=int, default=64)
    parser.add_argument("--embedding-dims", type=int, nargs="+", default=[64, 128, 256])
    args = parser.parse_args(argv)

    import keras_hub
    import tensorflow as tf

    from albert_tf.distillation import minilm_folder
    from albert_tf.student import (SHARED_FROM_CHOICES, StudentShape, embedding_agreement,
                                   measure_inheritance, parameter_count, student_config)

    folder = str(minilm_folder())
    teacher = keras_hub.models.BertBackbone.from_preset(folder, dtype="float32")
    tokenizer = keras_hub.models.BertTokenizer.from_preset(folder)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(
        tokenizer=tokenizer, sequence_length=args.sequence_length)
    texts = held_out_texts(args.texts)
    batches = [preprocessor(tf.constant(texts[i:i + 64])) for i in range(0, len(texts), 64)]
    rows = measure_inheritance(teacher, batches, args.embedding_dims, SHARED_FROM_CHOICES)
    for row in rows:
        config = student_config(teacher, StudentShape(row["embedding_dim"]))
        row["parameters"] = parameter_count(keras_hub.models.AlbertBackbone(**config))
    random_student = keras_hub.models.AlbertBackbone(**student_config(teacher, StudentShape()))
    floor = {"embedding_dim": 128, "shared_from": "random init", "embedding_energy_kept": None,
             **embedding_agreement(random_student, teacher, batches),
             "parameters": parameter_count(random_student)}
    table = markdown_table(
        ["E", "shared layer from", "parameters", "embedding energy kept", "sentence cosine",
         "hidden MSE"],
        [[r["embedding_dim"], r["shared_from"], f"{r['parameters'] / 1e6:.1f}M",
          "—" if r["embedding_energy_kept"] is None else f"{r['embedding_energy_kept']:.3f}",
          f"{r['sentence_cosine']:.3f}", f"{r['hidden_mse']:.3f}"] for r in [*rows, floor]])
    text = (f"The student right after inheritance, before any training, against the teacher "
            f"({parameter_count(teacher) / 1e6:.1f}M parameters) on {len(texts)} held-out "
            f"texts (SST-2 test sentences, All_Beauty reviews), {args.sequence_length} tokens.\n\n"
            + table)
    path = write_results("student_init", {"texts": len(texts), "rows": rows, "random": floor},
                         text)
    print(text)
    print(f"\n{path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
