"""Would int8 inference pay on a CPU without bf16 units? fp32 against dynamic int8 (issue 17).

torch's dynamic quantisation (int8 weights, activations quantised per batch) of the text encoder's
Linear layers, which hold almost all of a step's FLOPs, on a trained run: MNRE val samples per second
at batch 64 and what it does to the predictions. A probe, not a pgmre option: the result decides
whether one is worth adding.

    python benchmarks/int8_inference.py runs/bench8/base-bucketed
"""

from __future__ import annotations

import argparse
import copy
import time
import warnings
from pathlib import Path

from common import ROOT, VAL, save_results

RESULTS = ROOT / "benchmarks" / "results" / "int8_inference.json"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run", type=Path, help="a pgmre run directory (its best checkpoint is used)")
    parser.add_argument("--repeats", type=int, default=2, help="timed passes over val per precision")
    args = parser.parse_args()

    import torch
    from torch.ao.quantization import quantize_dynamic

    from pgmre.data.mnre import load_samples
    from pgmre.evaluate.inference import predict_dataset
    from pgmre.evaluate.metrics import score
    from pgmre.pipeline import MREPipeline
    from pgmre.precision import cpu_model_name

    pipeline = MREPipeline.from_run(args.run)
    fp32 = pipeline.load_model(args.run / "best")
    int8 = copy.deepcopy(fp32)
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        int8.text_encoder = quantize_dynamic(int8.text_encoder, {torch.nn.Linear}, dtype=torch.qint8)
    samples = load_samples(ROOT / VAL, pipeline.vocab)
    dataset = pipeline.dataset(samples, split="dev")
    gold = [s.relation for s in samples]
    rows, labels = {}, {}
    for name, model in (("fp32", fp32), ("int8", int8)):
        predict_dataset(model, torch.utils.data.Subset(dataset, range(64)), pipeline.collate)  # warm-up
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            predictions = predict_dataset(model, dataset, pipeline.collate, batch_size=64)
            seconds.append(time.perf_counter() - started)
        labels[name] = [pipeline.vocab.decode(int(i)) for i in predictions.labels]
        report = score(gold, labels[name], pipeline.vocab)
        rows[name] = {
            "samples_per_second_batch64": round(len(dataset) / min(seconds), 1),
            "val_f1": report["f1"],
            "val_accuracy": report["accuracy"],
        }
        print(name, rows[name], flush=True)
    agreement = sum(a == b for a, b in zip(labels["fp32"], labels["int8"], strict=True)) / len(gold)
    save_results(
        RESULTS,
        {
            "run": str(args.run),
            "cpu": cpu_model_name(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "val_samples": len(gold),
            "precisions": rows,
            "prediction_agreement": round(agreement, 4),
            "speedup": round(
                rows["int8"]["samples_per_second_batch64"] / rows["fp32"]["samples_per_second_batch64"], 2
            ),
        },
    )
    print(f"agreement {agreement:.4f}; wrote {RESULTS}")


if __name__ == "__main__":
    main()
