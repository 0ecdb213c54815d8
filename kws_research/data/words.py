"""Word lists of the Speech Commands data set."""

COMMAND_WORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
AUXILIARY_WORDS = (
    "bed",
    "bird",
    "cat",
    "dog",
    "happy",
    "house",
    "marvin",
    "sheila",
    "tree",
    "wow",
    "backward",
    "forward",
    "follow",
    "learn",
    "visual",
)
# The 35 words of Speech Commands v0.02 (v0.01 has the first 30).
SPEECH_COMMANDS_WORDS = COMMAND_WORDS + DIGIT_WORDS + AUXILIARY_WORDS
