"""The bringup, with an exception nobody expected injected into one callback of each node.

Used by test_bringup_faults.py: once the package's own failure paths are all handled, the only
way left to raise an unexpected exception in a running node is to inject one. Frames whose
header.frame_id is ``raise_camera`` make the camera's decoder raise cv2.error, ``raise_learner``
the learner's; ``list_classes`` raises AttributeError; the consolidation node's status callback
raises KeyError after it took the status.
"""

import sys

import cv2

from cl_core_ros.nodes import bringup, camera_node, consolidation_node, learner_node


def _faulty(decode, frame_id):
    def decode_or_raise(msg, **kwargs):
        if msg.header.frame_id == frame_id:
            raise cv2.error(f'injected: a decoder failed on {frame_id}')
        return decode(msg, **kwargs)
    return decode_or_raise


def _list_classes(self, request, response):
    raise AttributeError("injected: 'numpy.ndarray' object has no attribute 'newbyteorder'")


_on_status = consolidation_node.ConsolidationNode._on_status


def _on_status_then_raise(self, msg):
    _on_status(self, msg)
    raise KeyError('injected')


camera_node.image_to_rgb = _faulty(camera_node.image_to_rgb, 'raise_camera')
learner_node.image_to_rgb = _faulty(learner_node.image_to_rgb, 'raise_learner')
learner_node.LearnerNode._list_classes = _list_classes
consolidation_node.ConsolidationNode._on_status = _on_status_then_raise

if __name__ == '__main__':
    sys.exit(bringup.main(sys.argv[1:]))
