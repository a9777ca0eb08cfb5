"""The base of the instance segmentation data modules: detection data whose every object has a region."""

from __future__ import annotations

from cvkit.data.detection.module import DetectionDataModule
from cvkit.errors import CvkitError


class InstanceSegmentationDataModule(DetectionDataModule):
    """Detection data (:class:`~cvkit.data.detection.module.DetectionDataModule`: loaders, sampling, resume,
    ground truth) whose records carry ``segmentations``, one per object: subclasses' :meth:`load_splits`
    give them, and each batch's targets gain ``masks`` (the contract is in :mod:`cvkit.data.instances`)."""

    name = "instance segmentation"

    def setup(self, stage: str | None = None) -> None:
        loaded = self.splits is not None
        super().setup(stage)
        if loaded:
            return
        for split, records in self.splits.items():
            for record in records:
                if record.segmentations is None or len(record.segmentations) != len(record.boxes):
                    raise CvkitError(
                        f"{type(self).__name__} gave {record.path} ({split}) without a region for each object: "
                        "an instance data module's load_splits() sets DetectionRecord.segmentations"
                    )
