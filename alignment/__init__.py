"""Report parsing, sentence-to-image alignment and disagreement detection."""
