"""Which file suffixes mean which kind of media: the one list of each, for everything that picks
files by name (corpus folders, a folder of clips to predict, a manifest cell holding an image).

A suffix only chooses what to try: once a file is opened, its streams, not its name, decide what
it holds (a .mp4 without a video track is sound only)."""

# Still images: a video cell holding one is decoded as a one-frame clip.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# The containers a clip comes in (PyAV/FFmpeg opens them all).
VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".webm", ".mov", ".m4v", ".flv", ".mpg", ".mpeg", ".ts", ".wmv", ".3gp")
AUDIO_SUFFIXES = (".wav", ".mp3", ".ogg", ".opus", ".m4a", ".flac", ".aac", ".wma")
CLIP_SUFFIXES = VIDEO_SUFFIXES + AUDIO_SUFFIXES

