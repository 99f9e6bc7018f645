"""train: stratified k-fold training of one model and what is built from its folds.

- cv: folds, one fold's training (train_fold), out-of-fold statistics
- augment: the affine (and optional elastic) augmentation map
- batchnorm: batch norm through TensorFlow's fused kernel while training
- tta: test-time augmentation of predictions
- bags: bag rows (<model>~N): the same folds trained with other seeds
- pseudo: pseudo-label rows (<model>+pl): fine-tuned on confident test predictions
- ensemble: the greedy out-of-fold ensemble of rows
- jobs: a fold's training as a job an executor runs (a worker process or a Ray task)
- flops: a built Keras model's forward FLOPs per image (ranks jobs, estimates costs)
"""

__all__ = ["augment", "bags", "batchnorm", "cv", "ensemble", "flops", "jobs", "pseudo", "tta"]
