"""Recording a training run: hooks and collectors, the buffered shard writer, system and energy samplers."""
