"""Semantic-segmentation data: images with class-index masks -> seeded, sharded batches.

A batch is ``(images, masks)``; what ``masks`` is depends on the loader::

    train       images  float32 [N, 3, H, W], normalised by ``data.mean``/``data.std`` (a GPU run's loader
                        gives uint8, normalised on the device); H x W is the size
                        ``data.train_transforms`` ends at (the default configs: ``data.image_size``)
                masks   int64 [N, H, W], transformed together with their images (nearest neighbour, so
                        values stay class indices): 0..K-1, or ``ignore_index``
    val, test   images  float32 [N, 3, H, W], resized to ``data.image_size`` = [H, W] and normalised
                masks   list of N int64 tensors [h_i, w_i]: each image's mask as read from its file, at
                        the image's original size (images of a split may differ in size)

Evaluation happens at the original resolution: upsample the logits of image i ([K, H, W]) to its mask's
[h_i, w_i] before the loss and the metric; pixels equal to ``ignore_index`` count in neither.

Masks are single-channel files of class indices: 8- or 16-bit grayscale PNGs, or palette PNGs (PIL mode
"P", read as their indices, as Pascal VOC stores them). A mask must have its image's size; a value that
is neither a class index (0..K-1) nor ``ignore_index`` is an error naming the file, raised when the mask
is read. An unreadable image or mask is skipped with a warning naming it, unless ``data.strict``.
"""

from cvkit.data import exported

__all__ = [
    "CocoSegmentationDataModule",
    "MaskFolderDataModule",
    "SegmentationDataModule",
    "SegmentationRecord",
    "VOCSegmentationDataModule",
]
__getattr__ = exported(__name__, __all__)
