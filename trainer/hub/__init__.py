"""Publishing to the Hugging Face Hub: a run folder as a model repo, the Gradio app as a Space."""
