"""Data stage: datasets in the P5 layout, format readers, leave-one-out splits, item text, prompts."""

from rl4rec.data.dataset import DEFAULT_DATA_DIR, RecDataset, default_data_dir, load_dataset
from rl4rec.data.item_text import ItemTextConfig, render_item_text
from rl4rec.data.prompts import PromptBuilder, PromptConfig, prompt_to_text
from rl4rec.data.splits import Example, SplitResult, leave_one_out, training_interactions

__all__ = [
    "DEFAULT_DATA_DIR",
    "Example",
    "ItemTextConfig",
    "PromptBuilder",
    "PromptConfig",
    "RecDataset",
    "SplitResult",
    "default_data_dir",
    "leave_one_out",
    "load_dataset",
    "prompt_to_text",
    "render_item_text",
    "training_interactions",
]
