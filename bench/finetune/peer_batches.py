"""What the HF peers (bench/finetune/peer_peft.py, bench/gpu/peer_hf.py) read of slmctl's dumped
micro-batches (`slmctl finetune --dump-batches FILE`): the steps in order, the step's loss-token
count, and one micro-batch as right-padded tensors with the response-only labels of the HF recipe."""
import json


def load_steps(path):
    """[(step, [micro-batch, ...]), ...] in step order; a micro-batch is a list of rows
    {"ids": [...], "prompt_len": P}."""
    steps = {}
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            steps.setdefault(j["step"], []).append(j["batch"])
    return sorted(steps.items())


def loss_tokens(micro):
    """Positions that carry loss over a step's micro-batches (slmctl divides the step's loss sum by it)."""
    return sum(max(0, len(r["ids"]) - max(r["prompt_len"], 1)) for b in micro for r in b)


def pad_right(rows):
    """ids, attention mask, labels (-100 on the prompt and padding) as (len(rows), T) CPU tensors, T the
    longest row; and the real and padding token counts."""
    import torch
    T = max(len(r["ids"]) for r in rows)
    ids = torch.zeros(len(rows), T, dtype=torch.long)
    att = torch.zeros(len(rows), T, dtype=torch.long)
    labels = torch.full((len(rows), T), -100, dtype=torch.long)
    real = 0
    for i, r in enumerate(rows):
        n = len(r["ids"])
        ids[i, :n] = torch.tensor(r["ids"])
        att[i, :n] = 1
        p = max(r["prompt_len"], 1)
        labels[i, p:n] = ids[i, p:n]
        real += n
    return ids, att, labels, real, len(rows) * T - real
