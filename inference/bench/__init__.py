"""`codellama bench`: speed of the engine on random-weight models of the real Code Llama shapes,
measured as ../BENCHMARKING.md (the project's benchmarking rules) asks, with the device copy
bandwidth and the transformers static-cache baseline taken in the same process."""
