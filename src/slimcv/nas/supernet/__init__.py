"""A weight-sharing supernet (Once-for-All) over the mobilenetv2 search space."""
