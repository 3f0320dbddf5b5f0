"""SASRec (Kang & McAuley 2018) trained with full-softmax cross-entropy: the trained sequential baseline.

An LLM query writer is only worth its cost if it beats a trained ID-based sequential model, not just
popularity and last-item. Full softmax (every item a negative) rather than the paper's one sampled
negative with BCE is what makes SASRec strong on sparse Amazon data (about 0.059 NDCG@10 on Beauty
with history masked, Xu et al. 2024, against 0.03 in the BCE tables).

No leakage by construction: the model trains on ``items[:-2]`` of each user and picks its epoch by
validation NDCG@10 (target ``items[-2]``); the data fingerprint hashes exactly ``items[:-1]``, so a
test item cannot reach training, model selection, or even the choice of cached model.

Training is expensive on CPU, so it is cached under ``cache_dir()/sasrec/<dataset>-<key>/``
(safetensors weights, plus ``sasrec.json`` with config, fingerprint and per-epoch validation) and
checkpointed after every epoch. Each epoch reseeds from (seed, epoch), so a resumed run ends with the
same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save
from torch import nn
from tqdm.auto import tqdm

from rl4rec.data.dataset import RecDataset
from rl4rec.data.splits import Example, leave_one_out, sample_users
from rl4rec.devices import resolve_device
from rl4rec.evaluation.ranking import ScoreMethod
from rl4rec.io import atomic_write_bytes, atomic_write_json, cache_dir
from rl4rec.metrics import compute_ranks, ndcg_from_ranks

logger = logging.getLogger(__name__)

FORMAT_VERSION = "1"
MODEL_FILE, INFO_FILE, CHECKPOINT_FILE = "model.safetensors", "sasrec.json", "checkpoint.safetensors"
Sequences = Mapping[int, Sequence[int]]


@dataclass
class SASRecConfig:
    hidden: int = 64
    blocks: int = 2
    heads: int = 1
    max_len: int = 50
    #: High dropout suits the sparse Amazon data (the SASRec paper uses 0.5 there).
    dropout: float = 0.5
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 200
    #: Stop after this many epochs without a better validation NDCG@10.
    patience: int = 10
    #: Seeded sample of validation users for model selection (0 = all).
    val_users: int = 5000
    seed: int = 0
    #: Not part of the cache key: the device changes speed, not what is trained.
    device: str = "auto"

    def key_fields(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "device"}


class SASRec(nn.Module):
    """Pre-LN causal transformer over left-padded item ids; item logits tie to the input embedding."""

    def __init__(self, n_items: int, cfg: SASRecConfig) -> None:
        super().__init__()
        self.max_len, self.heads = cfg.max_len, cfg.heads
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden)
        self.drop = nn.Dropout(cfg.dropout)
        layer = nn.TransformerEncoderLayer(
            cfg.hidden, cfg.heads, cfg.hidden, cfg.dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.blocks, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.hidden)
        # Unit-scale inputs after the sqrt(d) scaling and logits of order 1 at the start; PyTorch's
        # N(0, 1) default gives logits of order sqrt(d), a far-from-uniform softmax that trains slowly.
        nn.init.normal_(self.item_emb.weight, std=cfg.hidden**-0.5)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def forward(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden state per position of ``seqs`` ``[B, L <= max_len]`` (0 = left padding).

        Positions count back from the end, so trimming leading padding changes nothing. A real
        position attends to real positions up to itself; a padding position only to itself (a fully
        masked row would be NaN).
        """
        length = seqs.shape[1]
        pos = torch.arange(self.max_len - length, self.max_len, device=seqs.device)
        x = self.drop(self.item_emb(seqs) * self.item_emb.embedding_dim**0.5 + self.pos_emb(pos))
        future = torch.ones(length, length, dtype=torch.bool, device=seqs.device).triu(1)
        itself = torch.eye(length, dtype=torch.bool, device=seqs.device)
        blocked = (future | (seqs == 0)[:, None, :]) & ~itself
        return self.norm(self.encoder(x, mask=blocked.repeat_interleave(self.heads, dim=0)))

    def item_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """``[..., n_items]``; column ``j`` is item ``j + 1`` (the layout compute_ranks expects)."""
        return hidden @ self.item_emb.weight[1:].T


def left_pad(rows: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    out = torch.zeros(len(rows), width, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            out[i, width - len(row) :] = torch.as_tensor(list(row), dtype=torch.long)
    return out


def training_tensors(sequences: Sequences, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and next-item labels ``[users, max_len]`` from ``items[:-2]`` (0 = padding, no loss)."""
    rows = [list(s[: max(len(s) - 2, 0)])[-(max_len + 1) :] for s in sequences.values()]
    rows = [r for r in rows if len(r) >= 2]
    return left_pad([r[:-1] for r in rows], max_len), left_pad([r[1:] for r in rows], max_len)


def data_fingerprint(sequences: Sequences, n_items: int) -> str:
    """SHA-256 of everything training and model selection see: ``items[:-1]`` of each user."""
    h = hashlib.sha256(f"{n_items}\n".encode())
    for user in sorted(sequences):
        h.update(f"{user}:{' '.join(map(str, sequences[user][:-1]))}\n".encode())
    return h.hexdigest()


class SASRecScores(ScoreMethod):
    """Scores every item after the last history item (the most recent ``max_len`` items)."""

    name = "sasrec"

    def __init__(self, model: SASRec, n_items: int) -> None:
        super().__init__(n_items)
        self.model = model

    @torch.no_grad()
    def scores(self, examples: Sequence[Example]) -> torch.Tensor:
        self.model.eval()
        rows = [e.history[-self.model.max_len :] for e in examples]
        seqs = left_pad(rows, max(len(r) for r in rows)).to(self.model.item_emb.weight.device)
        return self.model.item_logits(self.model(seqs)[:, -1]).float().cpu()


def validation_ndcg(model: SASRec, examples: Sequence[Example], n_items: int, chunk: int = 512) -> float:
    scorer, ranks = SASRecScores(model, n_items), []
    for start in range(0, len(examples), chunk):
        part = examples[start : start + chunk]
        targets = torch.tensor([e.target for e in part])
        ranks.append(compute_ranks(scorer.scores(part), targets, [e.history for e in part]))
    return float(ndcg_from_ranks(torch.cat(ranks), 10).mean()) if ranks else 0.0


def _save_checkpoint(path: Path, model: SASRec, opt: Any, best: dict[str, torch.Tensor], state: dict) -> None:
    """One file (state JSON in the metadata), written atomically: weights and progress never disagree."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors |= {f"best.{k}": v for k, v in best.items()}
    for i, slots in opt.state_dict()["state"].items():
        tensors |= {f"opt.{i}.{name}": t for name, t in slots.items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(tensors, metadata={"state": json.dumps(state)}))


def _load_checkpoint(path: Path, model: SASRec, opt: Any, key: str) -> tuple[dict, dict] | None:
    try:
        with safe_open(str(path), "pt") as handle:
            state = json.loads(handle.metadata()["state"])
        tensors = load_file(str(path))
        if state.get("key") != key:
            return None
        part = lambda prefix: {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}  # noqa: E731
        model.load_state_dict(part("model."))
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for name, t in part("opt.").items():
            i, slot = name.split(".", 1)
            slots.setdefault(int(i), {})[slot] = t
        opt.load_state_dict({"state": slots, "param_groups": opt.state_dict()["param_groups"]})
        return state, part("best.")
    except (SafetensorError, OSError, KeyError, ValueError, RuntimeError) as exc:
        logger.warning("sasrec checkpoint %s is unusable (%s); training from scratch", path, exc)
        return None


def train_sasrec(
    sequences: Sequences, n_items: int, cfg: SASRecConfig, folder: Path, key: str = ""
) -> tuple[SASRec, dict[str, Any]]:
    """Train on ``items[:-2]`` with full-softmax CE; keep the epoch with the best validation NDCG@10."""
    device = torch.device(resolve_device(cfg.device))
    torch.manual_seed(cfg.seed)
    model = SASRec(n_items, cfg).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98))
    inputs, labels = training_tensors(sequences, cfg.max_len)
    valid = leave_one_out(sequences, "valid").examples
    valid = sample_users(valid, cfg.val_users or None, cfg.seed)
    state: dict[str, Any] = {"key": key, "epoch": 0, "best_epoch": 0, "best_ndcg": -1.0, "seconds": 0.0,
                             "history": []}  # fmt: skip
    best = {k: v.clone() for k, v in model.state_dict().items()}
    checkpoint = folder / CHECKPOINT_FILE
    resumed = _load_checkpoint(checkpoint, model, opt, key) if checkpoint.is_file() else None
    if resumed is not None:
        state, best = resumed
        logger.info("sasrec: resuming %s after epoch %d", folder, state["epoch"])
    while state["epoch"] < cfg.epochs and state["epoch"] - state["best_epoch"] < cfg.patience:
        epoch, started, total = state["epoch"] + 1, time.monotonic(), 0.0
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)
        order = torch.randperm(len(inputs))
        model.train()
        bar = tqdm(range(0, len(order), cfg.batch_size), desc=f"sasrec epoch {epoch}", unit="batch",
                   leave=False, dynamic_ncols=True)  # fmt: skip
        for start in bar:
            idx = order[start : start + cfg.batch_size]
            x, y = inputs[idx], labels[idx]
            width = int((x != 0).sum(1).max())  # drop all-padding columns (positions count from the end)
            x, y = x[:, -width:].to(device), y[:, -width:].to(device)
            keep = y > 0
            loss = F.cross_entropy(model.item_logits(model(x)[keep]), y[keep] - 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        ndcg = validation_ndcg(model, valid, n_items)
        if ndcg > state["best_ndcg"]:
            best = {k: v.detach().clone() for k, v in model.state_dict().items()}
            state.update(best_ndcg=ndcg, best_epoch=epoch)
        state["epoch"], seconds = epoch, time.monotonic() - started
        state["seconds"] = round(state["seconds"] + seconds, 1)
        loss_mean = total / max(len(bar), 1)
        state["history"].append(
            {"epoch": epoch, "loss": round(loss_mean, 5), "valid_ndcg@10": round(ndcg, 5)}
        )
        logger.info("sasrec epoch %d: loss %.4f, valid NDCG@10 %.4f (best %.4f at epoch %d), %.0fs",
                    epoch, loss_mean, ndcg, state["best_ndcg"], state["best_epoch"], seconds)  # fmt: skip
        _save_checkpoint(checkpoint, model, opt, best, state)
    model.load_state_dict(best)
    state["valid_users"] = len(valid)
    return model, state


def load_or_train(dataset: RecDataset, cfg: SASRecConfig, root: Path | None = None) -> tuple[SASRec, Path]:
    """The cached model for (dataset, config, training data), training it first if needed."""
    fingerprint = data_fingerprint(dataset.sequences, dataset.n_items)
    parts = {"format": FORMAT_VERSION, "dataset": dataset.name, "n_items": dataset.n_items,
             "config": cfg.key_fields(), "data": fingerprint}  # fmt: skip
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()
    folder = (Path(root) if root is not None else cache_dir() / "sasrec") / f"{dataset.name}-{key[:16]}"
    model = SASRec(dataset.n_items, cfg)
    info_path, model_path = folder / INFO_FILE, folder / MODEL_FILE
    if info_path.is_file() and model_path.is_file():
        try:
            with safe_open(str(model_path), "pt") as handle:
                if handle.metadata().get("key") != key:
                    raise ValueError("key mismatch")
            model.load_state_dict(load_file(str(model_path)))
            logger.info("sasrec: reusing the trained model in %s", folder)
            return model.to(torch.device(resolve_device(cfg.device))).eval(), folder
        except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
            logger.warning("sasrec model %s is unusable (%s); retraining", model_path, exc)
    folder.mkdir(parents=True, exist_ok=True)
    logger.info("sasrec: training on %s (%d users, %d items) -> %s", dataset.name, dataset.n_users,
                dataset.n_items, folder)  # fmt: skip
    model, state = train_sasrec(dataset.sequences, dataset.n_items, cfg, folder, key)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(model_path, save(weights, metadata={"key": key}))
    atomic_write_json(info_path, {**parts, "key": key, "device": cfg.device,
                                  **{k: v for k, v in state.items() if k != "key"}})  # fmt: skip
    (folder / CHECKPOINT_FILE).unlink(missing_ok=True)
    return model.eval(), folder


def sasrec_config(config: Any) -> SASRecConfig:
    """The SASRec settings an :class:`EvalConfig` asks for (its ``sasrec_*`` fields and device)."""
    return SASRecConfig(epochs=config.sasrec_epochs, patience=config.sasrec_patience,
                        dropout=config.sasrec_dropout, seed=config.sasrec_seed, device=config.device)  # fmt: skip


def sasrec_method(config: Any, dataset: RecDataset) -> SASRecScores:
    """Loads or trains the model, and copies its training record next to the evaluation's ranks."""
    model, folder = load_or_train(dataset, sasrec_config(config))
    info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
    atomic_write_json(Path(config.resolved_run_dir()) / INFO_FILE, {"model_dir": str(folder), **info})
    return SASRecScores(model, dataset.n_items)
