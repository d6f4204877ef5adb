"""Data parallelism: replicas of `codellama serve` behind the SGLang Model Gateway (`smg`, the
optional `cluster` dependency). children: the processes; plan: what each replica gets;
supervisor: `codellama serve --dp N`."""
