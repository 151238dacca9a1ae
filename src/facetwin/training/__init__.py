"""The paper's Siamese transfer learning: config, data, pairs, the network, the loop, the run directory."""
