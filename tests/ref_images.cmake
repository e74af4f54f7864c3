# Reference test of the image input (tests/ref/test_image_pixels.py): modserve's pixel
# tensor (`modserve image preprocess`) against Pillow + CLIPImageProcessor on a corpus
# written by the test, and the refused formats named in the error.
ms_add_ref_test(ref_image_pixels test_image_pixels.py)
set_tests_properties(ref_image_pixels PROPERTIES LABELS "ref;encoder")
