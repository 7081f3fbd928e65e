"""Word lists the training-data builder draws from: objects, scenes, styles, general questions.

Written for this project (no test-set text): captions and requests are composed from these lists,
so the built data cannot contain a test item's caption or request verbatim.
"""

OBJECTS = (
    "dog", "cat", "horse", "bicycle", "red car", "bus", "train", "airplane", "boat", "traffic light",
    "fire hydrant", "stop sign", "bench", "bird", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "backpack", "umbrella", "handbag", "suitcase", "frisbee", "pair of skis", "snowboard", "kite",
    "baseball bat", "skateboard", "surfboard", "tennis racket", "wine glass", "coffee cup", "bowl",
    "banana", "apple", "sandwich", "orange", "pizza", "donut", "birthday cake", "chair", "couch",
    "potted plant", "bed", "dining table", "laptop", "television", "keyboard", "cell phone", "microwave",
    "refrigerator", "book", "clock", "vase", "teddy bear", "hair dryer", "toothbrush", "lamp", "guitar",
    "wooden fence", "tall tree", "mountain bike", "sailboat", "street sign", "motorcycle", "pickup truck",
    "man in a blue shirt", "woman with a hat", "little girl", "old man", "chef", "police officer",
)
SCENES = (
    "on a busy city street", "in a small kitchen", "next to a lake", "in a grassy field", "on a sandy beach",
    "inside a living room", "at a train station", "in front of a brick building", "under a cloudy sky",
    "on a snowy hill", "in a crowded market", "beside a wooden table", "in a park at sunset",
    "near a parking lot", "in a bright office", "on a country road", "in a quiet bedroom", "at the airport",
    "by the river", "in a garden full of flowers", "on a tennis court", "in a restaurant", "at a zoo",
)
ADJECTIVES = ("small", "large", "brown", "white", "black", "colorful", "old", "shiny", "young", "sleepy", "wet", "tiny")
ACTIVITIES = (
    "sitting", "standing", "resting", "parked", "lying", "waiting", "playing", "walking", "displayed", "placed",
)
STYLES = (
    "make it look like a watercolor painting", "turn it into a pencil drawing", "make it look like winter",
    "make the sky look like sunset", "make it look like a cartoon", "turn it into an oil painting",
    "make it look like it is raining", "make it look like a robot", "add fireworks in the sky",
    "make it look like an old photograph", "make it look like night time", "make it look like a comic book",
)
QUESTIONS_ABOUT_IMAGE = (
    "what color is the {object}", "how many people are in the picture", "what is the weather like",
    "where is the {object}", "what is next to the {object}", "is there a {object} in the picture",
    "what is the background color", "what is the {object} doing", "what time of day is it",
)
GENERAL_TOPICS = (
    "photosynthesis", "the water cycle", "gravity", "inflation", "machine learning", "the French Revolution",
    "a black hole", "democracy", "climate change", "the immune system", "recycling", "compound interest",
    "the internet", "volcanoes", "renewable energy", "the stock market", "DNA", "the moon landing",
    "a healthy diet", "time management", "public speaking", "the Roman Empire", "electric cars", "vaccines",
)
GENERAL_QUESTION_TEMPLATES = (
    "What is {topic}?", "Explain {topic} in simple terms.", "Give me three facts about {topic}.",
    "Why is {topic} important?", "Write one sentence about {topic}.", "Summarize {topic} for a child.",
)
STANDALONE_QUESTIONS = (
    "Give three tips for staying healthy.", "What is the capital of Japan?", "How do I make a cup of tea?",
    "Suggest a name for a new coffee shop.", "Translate 'good morning' into Spanish.",
    "What are the primary colors?", "Write a haiku about autumn.", "How many days are in a leap year?",
    "What is the difference between weather and climate?", "Recommend a good habit for learning faster.",
    "Convert 10 kilometers to miles.", "What should I pack for a weekend trip?",
    "Name three famous painters.", "How can I improve my sleep?", "What does a software engineer do?",
)
