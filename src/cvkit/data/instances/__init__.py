"""Instance segmentation data: images with a box, a class and a mask per object -> ``(images, targets)``
batches, the detection contract (:mod:`cvkit.data.detection`) with masks added::

    targets[i]  {"boxes": float32 [N, 4], "labels": int64 [N] in 1..K, "masks": uint8 [N, H, W] (1 inside the
                 object, the image's size), "image_id": int}

A mask moves with its image and box through every augmentation; an object whose box is dropped (cropped
away, data.min_box_visibility) or whose mask has no pixel left is dropped whole. Crowd regions are left out
of training and kept, as RLE, in the ground truth that evaluation scores against.
"""

from cvkit.data import exported

__all__ = ["CocoInstanceDataModule", "InstanceSegmentationDataModule", "YOLOInstanceDataModule"]
__getattr__ = exported(__name__, __all__)
