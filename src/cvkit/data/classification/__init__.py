"""Image classification data: labelled images -> seeded, sharded ``(images, labels)`` batches.

A batch is ``(images, labels)``::

    images  float32 [N, 3, S, S], normalised by ``data.mean``/``data.std``, as the task's steps receive
            them; S is the size the split's transforms end at (the default configs: ``data.image_size``).
            For a GPU run the loader gives them as uint8, normalised once on the device
            (:func:`cvkit.data.batches.finish_batch`)
    labels  int64 [N], class indices 0..K-1 in the order of ``class_names``

Images are read as RGB (grayscale and palette files converted). An unreadable image is left out of its
batch with a warning naming it, and named in ``batch.unreadable`` (:mod:`cvkit.data.batches`), unless
``data.strict``; a batch of which no image could be read is empty.
"""

from cvkit.data import exported

__all__ = [
    "ClassificationDataModule",
    "DigitsDataModule",
    "ImageFolderDataModule",
    "Split",
    "TorchvisionDataModule",
]
__getattr__ = exported(__name__, __all__)
