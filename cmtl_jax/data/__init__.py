"""Data: the offline TFDS builders (`builders`), image folders listed and decoded (`folder`), loading and
stratified splits into arrays on the device with the on-device preprocessing (`loading`), and the
cross-validation folds (`folds`)."""

from cmtl_jax.data.loading import (BUILTIN, FOLDER, SYNTHETIC, Dataset, as_uint8_images, check_channels,
                                   check_memory, load_dataset, load, map_batches, preprocess, stage,
                                   synthetic_images)

__all__ = ['BUILTIN', 'FOLDER', 'SYNTHETIC', 'Dataset', 'as_uint8_images', 'check_channels', 'check_memory',
           'load_dataset', 'load', 'map_batches', 'preprocess', 'stage', 'synthetic_images']
