"""DDP worker for tests/test_torch_modules.py (a module of its own so spawned processes can import it)."""

from __future__ import annotations

import torch
from torch import nn

import pycnnrnn.torch as pt


class CnnLstm(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.lstm = nn.LSTM(4, 6)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        y = self.pool(torch.relu(self.conv(x)))  # (N, 4, 4, 4)
        _, (h, c) = self.lstm(y.flatten(2).permute(2, 0, 1))
        return self.fc(torch.cat([h[-1], c[-1]], 1))


def ddp_worker(rank, world, port, x, y, state, out_queue):
    import os
    import time

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = CnnLstm().double()
        model.load_state_dict(state)
        pt.convert(model)
        ddp = DDP(model)
        n = x.shape[0] // world
        loss = nn.functional.cross_entropy(ddp(x[rank * n : (rank + 1) * n]), y[rank * n : (rank + 1) * n])
        loss.backward()
        if rank == 0:
            # numpy arrays pickle by value (a tensor would be shared via a file that dies with us)
            out_queue.put({k: p.grad.numpy().copy() for k, p in model.named_parameters()})
    finally:
        # torch's gloo worker thread frees the last allreduce's work item (it holds a Python
        # object) after the collective returns; if the interpreter is already finalizing, that
        # decref's GIL acquire ends the thread inside a noexcept frame -> std::terminate
        # (seen in 1-4 of 6 runs: ProcessGroupGloo::runLoop -> ~AsyncAllreduceWork ->
        # ~ThreadLocalState -> gil_scoped_acquire -> pthread_exit). Let it finish first.
        dist.barrier()
        time.sleep(0.3)
        dist.destroy_process_group()
