"""Synthetic tool definitions in the GPT4Tools style, composed from vocabularies (issue 14 item 2).

With only the 23 seen tools, a generator can memorise each tool's adapter instead of learning to read
a definition. These families add a few hundred more, each a dict shaped like `tools_seen.json`'s
entries plus the requests that fit it:

    name, description ("useful when ... like: ... The input to this tool should be ..."),
    observation, needs_image, prerequisite (always None: synthetic tools are one-step),
    num_args, requests (templates over the builder's slots), text_slot (the second argument's slot),
    concept (tools with one concept never share a tool list: two tools doing one job would make the
    gold answer ambiguous).

Written for this project, from no test-set text. None of the concepts of the 8 unseen test tools
(faces, text/OCR, 3D assets, image quality, cropping, super-resolution, detecting every object) is
here; `tests/test_gpt4tools_builder.py` checks the names and descriptions against the test file.
"""

from __future__ import annotations

from functools import cache

IMAGE_INPUT = "The input to this tool should be a string, representing the image_path."
TEXT_INPUT = "The input to this tool should be a string, representing the {what}."
IMAGE_AND_TEXT_INPUT = "The input to this tool should be a comma separated string of two, representing the image_path and the {what}."

# (noun, verb): something a model can read off an image; the tool returns text.
ANALYSES = (
    ("dominant color", "find"), ("color palette", "extract"), ("horizon line", "detect"), ("vanishing point", "locate"),
    ("saliency", "estimate"), ("brightness level", "measure"), ("noise level", "estimate"), ("weather", "recognize"),
    ("scene type", "classify"), ("time of day", "estimate"), ("season", "guess"), ("main animal", "identify"),
    ("plant species", "identify"), ("dog breed", "identify"), ("bird species", "identify"), ("car model", "identify"),
    ("food dish", "recognize"), ("landmark", "recognize"), ("clothing style", "describe"), ("hand gesture", "recognize"),
    ("camera angle", "estimate"), ("image orientation", "detect"), ("symmetry", "measure"), ("texture", "describe"),
    ("art style", "classify"), ("mood", "describe"), ("lighting direction", "estimate"), ("shadow direction", "estimate"),
    ("road lanes", "detect"), ("traffic signs", "detect"), ("barcode", "read"), ("watermark", "detect"),
    ("logo", "detect"), ("flag", "recognize"), ("flower type", "identify"), ("fruit ripeness", "estimate"),
    ("sky coverage", "measure"), ("crowd density", "estimate"), ("number of vehicles", "count"), ("number of trees", "count"),
    ("number of windows", "count"), ("room type", "classify"), ("building style", "classify"), ("sport", "recognize"),
    ("musical instrument", "identify"), ("cloud type", "classify"), ("water surface", "detect"), ("smoke", "detect"),
    ("fire", "detect"), ("motion blur", "detect"), ("exposure", "measure"), ("contrast level", "measure"),
    ("keypoints", "detect"), ("corners", "detect"), ("blobs", "detect"), ("circles", "detect"),
    ("aspect ratio", "measure"), ("main subject", "locate"), ("empty space", "find"), ("reflections", "detect"),
    ("age of the building", "estimate"), ("paint colors", "list"),
)
# Name patterns for analyses; each analysis gets two names (two definitions of one concept).
ANALYSIS_NAMES = ("{Noun} Detection On Image", "Predict {Noun} On Image", "Estimate {Noun} Of Image", "Analyze {Noun} In Image")
ANALYSIS_REQUESTS = (
    "{verb} the {noun} of {image}", "what is the {noun} of {image}", "tell me the {noun} in {image}",
    "can you {verb} the {noun} in {image}", "{verb} the {noun} for {image}",
)

# (noun, description of the map): a map the tool writes as a new image; also a condition for generation.
MAPS = (
    ("saliency map", "the regions that draw the eye"), ("contour map", "the outlines of shapes"),
    ("shadow map", "where the shadows fall"), ("heat map", "where the objects are dense"),
    ("thermal image", "a false-color heat view"), ("outline sketch", "clean outlines"),
    ("color segmentation", "regions of one color"), ("superpixel map", "small regions of similar pixels"),
    ("optical texture map", "repeating patterns"), ("corner map", "the corners of shapes"),
    ("gradient map", "how fast the brightness changes"), ("line art", "thin black lines"),
    ("silhouette", "the dark shape of the main subject"), ("foreground mask", "the foreground pixels"),
    ("sky mask", "the sky pixels"), ("road mask", "the road pixels"), ("skeleton map", "the thin middle lines of shapes"),
    ("occlusion map", "which objects hide others"),
)
MAP_NAMES = ("Generate {Noun} On Image", "{Noun} Extraction On Image")
MAP_REQUESTS = (
    "generate the {noun} of {image}", "extract the {noun} from {image}", "show me the {noun} of {image}",
    "make a {noun} of {image}", "create a {noun} from {image}",
)
CONDITION_NAME = "Generate Image Condition On {Noun}"
CONDITION_REQUESTS = (
    "generate a real image of a {desc} from the {noun} of {image}", "use the {noun} of {image} to draw a {desc}",
    "turn the {noun} of {image} into a picture of a {desc}",
)

# (name, like phrases): edits that return a new image.
EDITS = (
    ("Convert Image To Grayscale", ("make {image} black and white", "convert {image} to grayscale", "remove the colors of {image}")),
    ("Colorize The Image", ("colorize {image}", "add colors to {image}", "make {image} colorful")),
    ("Rotate The Image", ("rotate {image}", "turn {image} upside down", "rotate {image} by ninety degrees")),
    ("Flip The Image Horizontally", ("flip {image} horizontally", "mirror {image}", "flip {image} left to right")),
    ("Invert Image Colors", ("invert the colors of {image}", "make a negative of {image}", "invert {image}")),
    ("Apply Sepia Filter On Image", ("apply a sepia filter to {image}", "make {image} look sepia", "give {image} a sepia tone")),
    ("Blur The Background Of Image", ("blur the background of {image}", "make the background of {image} blurry", "add a bokeh effect to {image}")),
    ("Remove The Background From Image", ("remove the background of {image}", "cut out the background of {image}", "make the background of {image} transparent")),
    ("Pixelate The Image", ("pixelate {image}", "make {image} look like pixel art", "turn {image} into big pixels")),
    ("Add A Frame To Image", ("add a frame to {image}", "put a border around {image}", "frame {image}")),
    ("Cartoonize The Image", ("turn {image} into a cartoon", "cartoonize {image}", "draw {image} as a cartoon")),
    ("Adjust Image Brightness", ("make {image} brighter", "brighten {image}", "increase the brightness of {image}")),
    ("Darken The Image", ("make {image} darker", "darken {image}", "reduce the brightness of {image}")),
    ("Increase Image Saturation", ("make the colors of {image} stronger", "saturate {image}", "boost the colors of {image}")),
    ("Add Vignette To Image", ("add a vignette to {image}", "darken the corners of {image}", "give {image} a vignette")),
    ("Make Image Collage", ("make a collage from {image}", "turn {image} into a collage", "create a collage of {image}")),
    ("Add Snow To Image", ("add falling snow to {image}", "make it snow in {image}", "put snow on {image}")),
    ("Add Rain To Image", ("add rain to {image}", "make it rain in {image}", "put rain drops on {image}")),
    ("Change Image To Night", ("make {image} look like night", "turn {image} into a night scene", "change {image} to night")),
    ("Apply Oil Paint Effect On Image", ("make {image} look like an oil painting", "apply an oil paint effect to {image}", "paint {image} in oil")),
    ("Apply Watercolor Effect On Image", ("make {image} look like a watercolor", "apply a watercolor effect to {image}", "turn {image} into a watercolor")),
    ("Apply Mosaic Effect On Image", ("make a mosaic from {image}", "apply a mosaic effect to {image}", "turn {image} into tiles")),
    ("Add Lens Flare To Image", ("add a lens flare to {image}", "put a sun flare on {image}", "give {image} a lens flare")),
    ("Make Image Panorama Wide", ("extend {image} to a panorama", "make {image} wider", "widen {image} into a panorama")),
    ("Straighten The Horizon Of Image", ("straighten the horizon of {image}", "level {image}", "fix the tilt of {image}")),
    ("Add Motion Blur To Image", ("add motion blur to {image}", "make {image} look fast", "blur {image} as if moving")),
    ("Make Image Look Vintage", ("make {image} look vintage", "give {image} a retro look", "make {image} look like the seventies")),
    ("Apply Pop Art Style On Image", ("turn {image} into pop art", "make {image} look like pop art", "apply a pop art style to {image}")),
    ("Tile The Image", ("tile {image} four times", "repeat {image} in a grid", "make a tiled pattern from {image}")),
    ("Add Fog To Image", ("add fog to {image}", "make {image} foggy", "put mist over {image}")),
    ("Turn Image Into Embroidery", ("make {image} look embroidered", "turn {image} into embroidery", "stitch {image} as embroidery")),
    ("Make Image Look Like Neon", ("make {image} glow like neon", "give {image} neon colors", "turn {image} into neon art")),
)
# (verb, name pattern, observation kind): tools over one object of the image (image_path, object).
OBJECT_ACTIONS = (
    ("count the", "Count The Given Object", "text"), ("highlight the", "Highlight The Given Object", "image"),
    ("blur the", "Blur The Given Object", "image"), ("recolor the", "Recolor The Given Object", "image"),
    ("measure the size of the", "Measure The Given Object", "text"), ("outline the", "Outline The Given Object", "image"),
    ("enlarge the", "Enlarge The Given Object", "image"), ("shrink the", "Shrink The Given Object", "image"),
    ("move to the left the", "Move The Given Object", "image"), ("duplicate the", "Duplicate The Given Object", "image"),
    ("track the", "Track The Given Object", "text"), ("describe the color of the", "Describe Color Of The Given Object", "text"),
    ("estimate the distance to the", "Estimate Distance To The Given Object", "text"),
    ("find the position of the", "Locate The Given Object", "text"), ("pixelate the", "Pixelate The Given Object", "image"),
    ("add a shadow under the", "Add Shadow Under The Given Object", "image"), ("make transparent the", "Make The Given Object Transparent", "image"),
    ("put a label on the", "Label The Given Object", "image"), ("rotate the", "Rotate The Given Object", "image"),
    ("brighten the", "Brighten The Given Object", "image"), ("estimate the weight of the", "Estimate Weight Of The Given Object", "text"),
    ("check the material of the", "Identify Material Of The Given Object", "text"),
)
OBJECT_REQUESTS = ("{verb} {object} in {image}", "please {verb} {object} in {image}", "can you {verb} {object} of {image}")
# Media made from a text description (one text argument), the GPT4Tools "From User Input Text" family.
MEDIA = (
    "Video", "Music Clip", "Logo", "Icon", "Comic Strip", "Poster", "Floor Plan", "Wallpaper", "Sticker", "Emoji",
    "Pixel Art", "Coloring Page", "Map Illustration", "Bar Chart", "Diagram", "Storyboard", "Greeting Card", "Book Cover",
    "Tattoo Design", "Fabric Pattern", "Animated GIF", "Sound Effect", "Voice Recording", "Cartoon Character",
    "Landscape Painting", "Portrait Painting", "Postcard", "Banner", "Menu Design", "Business Card", "Infographic",
    "Mandala", "Crossword Puzzle", "Board Game Design", "Architecture Sketch",
)
MEDIA_NAME = "Generate {Media} From User Input Text"
MEDIA_REQUESTS = ("generate a {media} of a {desc}", "make a {media} showing a {desc}", "create a {media} about a {desc}")
# Text-only tools: (name, purpose, input, like phrases over {topic}).
TEXT_TOOLS = tuple(
    (f"Translate Text To {language}", f"translate a sentence into {language}", "text to translate",
     (f"translate {{topic}} into {language}", f"say {{topic}} in {language}", f"how do you say {{topic}} in {language}"))
    for language in ("French", "German", "Spanish", "Italian", "Japanese", "Chinese", "Korean", "Portuguese", "Russian", "Arabic", "Hindi", "Dutch")
) + (
    ("Search Wikipedia For Text", "look up a topic on Wikipedia", "topic to search", ("search wikipedia for {topic}", "look up {topic} on wikipedia")),
    ("Search News For Text", "find recent news about a topic", "topic to search", ("find news about {topic}", "search the news for {topic}")),
    ("Search Recipes For Text", "find a recipe", "dish or ingredient", ("find a recipe with {topic}", "how do I cook {topic}")),
    ("Summarize The Given Text", "shorten a text into a summary", "text to summarize", ("summarize this: {topic}", "give me a summary of {topic}")),
    ("Check Spelling Of Text", "correct the spelling of a text", "text to check", ("check the spelling of {topic}", "fix the typos in {topic}")),
    ("Define The Given Word", "get the dictionary definition of a word", "word", ("define {topic}", "what does {topic} mean")),
    ("Find Synonyms Of Word", "list words with the same meaning", "word", ("give me synonyms of {topic}", "another word for {topic}")),
    ("Get Weather Forecast For City", "know the weather forecast of a city", "city name", ("what is the weather in {topic}", "weather forecast for {topic}")),
    ("Get Local Time Of City", "know the local time of a city", "city name", ("what time is it in {topic}", "local time in {topic}")),
    ("Calculate Math Expression", "compute the value of an arithmetic expression", "expression", ("calculate {topic}", "what is {topic}")),
    ("Convert Currency Amount", "convert an amount of money into another currency", "amount and currencies", ("convert {topic}", "how much is {topic}")),
    ("Convert Units Of Measure", "convert a quantity into other units", "quantity and units", ("convert {topic}", "how many is {topic}")),
    ("Get Stock Price Of Company", "know the stock price of a company", "company name", ("stock price of {topic}", "how is {topic} stock doing")),
    ("Write Poem From User Input Text", "write a short poem on a theme", "theme", ("write a poem about {topic}", "compose verses on {topic}")),
    ("Tell Joke About Topic", "hear a joke on a theme", "theme", ("tell me a joke about {topic}", "make me laugh about {topic}")),
    ("Find Rhymes Of Word", "list words that rhyme", "word", ("what rhymes with {topic}", "find rhymes for {topic}")),
    ("Get Population Of Country", "know how many people live in a country", "country name", ("population of {topic}", "how many people live in {topic}")),
    ("Find Flights Between Cities", "search flights between two cities", "two city names", ("find flights {topic}", "search for flights {topic}")),
    ("Set A Reminder", "be reminded of something later", "reminder text", ("remind me to {topic}", "set a reminder to {topic}")),
    ("Send Email Message", "send an email", "recipient and message", ("email {topic}", "send an email to {topic}")),
    ("Play Music By Artist", "play songs by an artist", "artist name", ("play songs by {topic}", "put on some {topic}")),
    ("Find Nearby Restaurants", "find restaurants near a place", "place", ("restaurants near {topic}", "where can I eat near {topic}")),
    ("Get Movie Information", "know about a film", "movie title", ("tell me about the movie {topic}", "who directed {topic}")),
    ("Count Words In Text", "count the words of a text", "text", ("count the words in {topic}", "how many words are in {topic}")),
)
TEXT_TOPICS = (
    "good morning", "the blue whale", "apple pie", "Paris", "Tokyo", "12 times 7", "100 dollars to euros",
    "5 miles to kilometers", "serendipity", "the ocean", "Mozart", "buy milk tomorrow", "the moon landing",
    "Berlin to Rome", "a rainy day", "Canada", "the Eiffel Tower", "happy", "lemon cake", "electric cars",
)


def _title(noun: str) -> str:
    return " ".join(word[:1].upper() + word[1:] for word in noun.split())


def _like(phrases: tuple[str, ...] | list[str], slots: dict[str, str]) -> str:
    return ", or ".join(p.format(**slots) for p in phrases)


def _tool(name, description, observation, needs_image, num_args, requests, concept, text_slot="desc") -> dict:
    return {"name": name, "description": description, "observation": observation, "needs_image": needs_image,
            "prerequisite": None, "num_args": num_args, "requests": tuple(requests), "text_slot": text_slot, "concept": concept}


def _slug(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split()[:3])


@cache
def synthetic_tools() -> tuple[dict, ...]:
    """Every synthetic tool definition, in a fixed order (names are unique)."""
    tools: list[dict] = []
    for index, (noun, verb) in enumerate(ANALYSES):
        for variant in range(2):
            name = ANALYSIS_NAMES[(index + variant) % len(ANALYSIS_NAMES)].format(Noun=_title(noun))
            requests = [r.format(noun=noun, verb=verb, image="{image}") for r in ANALYSIS_REQUESTS]
            purpose = f"{verb} the {noun} of the image" if variant == 0 else f"know the {noun} in the picture"
            like = _like(requests[variant::2], {"image": "this image"})
            tools.append(_tool(name, f"useful when you want to {purpose}. like: {like}. {IMAGE_INPUT}",
                               f"[output_from_{_slug(noun)}_tool]", True, 1, requests, f"analysis:{noun}"))
    for noun, what in MAPS:
        for variant, pattern in enumerate(MAP_NAMES):
            requests = [r.format(noun=noun, image="{image}") for r in MAP_REQUESTS]
            like = _like(requests[variant : variant + 3], {"image": "this image"})
            tools.append(_tool(pattern.format(Noun=_title(noun)),
                               f"useful when you want to show {what} of the image as a {noun}. like: {like}. {IMAGE_INPUT}",
                               "image_path", True, 1, requests, f"map:{noun}"))
        requests = [r.format(noun=noun, image="{image}", desc="{desc}") for r in CONDITION_REQUESTS]
        tools.append(_tool(CONDITION_NAME.format(Noun=_title(noun)),
                           f"useful when you want to generate a new real image from both the user description and a {noun}. "
                           f"like: {_like(requests[:2], {'image': 'this image', 'desc': 'object or something'})}. "
                           + IMAGE_AND_TEXT_INPUT.format(what="user description"),
                           "image_path", True, 2, requests, f"condition:{noun}"))
    for name, phrases in EDITS:
        like = _like(phrases, {"image": "this image"})
        tools.append(_tool(name, f"useful when you want to {phrases[0].format(image='the image')}. like: {like}. {IMAGE_INPUT}",
                           "image_path", True, 1, phrases, f"edit:{name}"))
    for verb, name, kind in OBJECT_ACTIONS:
        requests = [r.format(verb=verb, object="{object}", image="{image}") for r in OBJECT_REQUESTS]
        like = _like(requests[:2], {"object": "cat", "image": "this image"})
        tools.append(_tool(name, f"useful when you want to {verb} given objects in the picture. like: {like}. "
                           + IMAGE_AND_TEXT_INPUT.format(what="text description of the object"),
                           "image_path" if kind == "image" else f"[output_from_{_slug(name)}_tool]", True, 2, requests,
                           f"object:{name}", text_slot="object"))
    for media in MEDIA:
        lower = media.lower()
        requests = [r.format(media=lower, desc="{desc}") for r in MEDIA_REQUESTS]
        like = _like(requests[:2], {"desc": "object or something"})
        tools.append(_tool(MEDIA_NAME.format(Media=media),
                           f"useful when you want to generate a {lower} from a user input text and save it to a file. like: {like}. "
                           + TEXT_INPUT.format(what=f"text used to generate the {lower}"),
                           "image_path", False, 1, requests, f"media:{media}"))
    for name, purpose, what, phrases in TEXT_TOOLS:
        like = _like(phrases, {"topic": "something"})
        tools.append(_tool(name, f"useful when you want to {purpose}. like: {like}. " + TEXT_INPUT.format(what=what),
                           f"[output_from_{_slug(name)}_tool]", False, 1, phrases, f"text:{name}", text_slot="topic"))
    names = [t["name"] for t in tools]
    assert len(names) == len(set(names)), "synthetic tool names must be unique"
    return tuple(tools)
