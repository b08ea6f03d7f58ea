"""Official download locations, sizes and checksums of the three datasets.

Checksums are the published values used across the community (torchvision-style
loaders, TFDS ``url_checksums``); a value that is not known is ``None`` and
that check is skipped. The Cars196 URLs have been dead upstream for years:
``python -m data_prep.download`` then says which file to place where by hand.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset's official release."""

    name: str  # file name under --root
    urls: tuple  # tried in order
    size: int = None  # bytes
    md5: str = None
    sha256: str = None
    extract: bool = True  # an archive to unpack into --root
    note: str = ""


SOURCES = {
    "cub": (
        RemoteFile(
            name="CUB_200_2011.tgz",
            urls=(
                "https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                "http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/CUB_200_2011.tgz",
            ),
            size=1150585339,
            md5="97eceeb196236b17998738112f37df78",
            sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
            note="extracts to CUB_200_2011/ (images.txt, images/...)",
        ),
    ),
    "cars196": (
        RemoteFile(
            name="car_ims.tgz",
            urls=(
                "http://ai.stanford.edu/~jkrause/car196/car_ims.tgz",
                "http://imagenet.stanford.edu/internal/car196/car_ims.tgz",
            ),
            md5="d5c8f0aa497503f355e17dc7886c3f14",
            note="extracts to car_ims/000001.jpg ... 016185.jpg",
        ),
        RemoteFile(
            name="cars_annos.mat",
            urls=(
                "http://ai.stanford.edu/~jkrause/car196/cars_annos.mat",
                "http://imagenet.stanford.edu/internal/car196/cars_annos.mat",
            ),
            md5="b407c6086d669747186bd1d764ff9dbc",
            extract=False,
        ),
    ),
    "sop": (
        RemoteFile(
            name="Stanford_Online_Products.zip",
            urls=(
                "ftp://cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
                "http://ftp.cs.stanford.edu/cs/cvgl/Stanford_Online_Products.zip",
            ),
            md5="7f73d41a2f44250d4779881525aea32e",
            note="extracts to Stanford_Online_Products/ (Ebay_train.txt, Ebay_test.txt, *_final/)",
        ),
    ),
}
