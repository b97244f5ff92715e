"""Handler code shipped inside every .mar: pure transforms plus thin TorchServe glue."""
