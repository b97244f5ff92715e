"""What each servable model IS: architecture, weights source, labels, preprocessing defaults."""
