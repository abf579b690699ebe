"""Data: the offline TFDS builders (`builders`), loading and stratified splits into arrays on the device with the
on-device preprocessing (`loading`), and the cross-validation folds (`folds`)."""

from cmtl_jax.data.loading import (BUILTIN, SYNTHETIC, Dataset, check_channels, load_dataset, load, preprocess,
                                   stage, synthetic_images)

__all__ = ['BUILTIN', 'SYNTHETIC', 'Dataset', 'check_channels', 'load_dataset', 'load', 'preprocess', 'stage',
           'synthetic_images']
