"""The tool-using agent that serves requests with a LoRA-Gen specialised edge model."""
