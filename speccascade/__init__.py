"""speccascade: predict, simulate, execute and calibrate speculative decoding cascades."""
