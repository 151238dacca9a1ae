"""From a photo to aligned face crops: decode (``io``), detect (YuNet), align, and the policies (``faces``)."""
