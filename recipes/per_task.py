"""Three separate models, one per task (mask, gender, age), combined into the 18 classes beat one 18-way model (the retrospective saw no gain)."""
from recipes.person_split import recipe as parent

recipe = parent.but(heads="separate")
