"""bf16 autocast keeps macro F1 while cutting time per epoch (on a GPU; on 2 CPU cores expect it slower)."""
from recipes.person_split import recipe as parent

recipe = parent.but(precision="bf16")
