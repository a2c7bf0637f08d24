"""Training on pycnnrnn kernels: a procedurally generated VQA task and a small VQA model.

- ``pycnnrnn.train.scenes`` (numpy only): scenes of coloured shapes and questions about them.
- ``pycnnrnn.train.infer`` (numpy only): the shipped model (pycnnrnn/data/vqa_small.npz)
  answering questions with pycnnrnn's numpy kernels.
- ``pycnnrnn.train.model`` / ``pycnnrnn.train.vqa`` (torch): the model and the training job
  behind ``python -m pycnnrnn train``.

Importing this package never imports torch.
"""
