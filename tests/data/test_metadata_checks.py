"""Metadata that lies: each reader stops with every ``file:line`` at fault (official formats, generated)."""

import os

import numpy as np
import pytest

from data_prep.prepare import prepare
from symm_keras import data
from tests.conftest import SHARED
from tests.data import fixtures

CARS_TRAIN_SIDE = SHARED / "data" / "cars196_train_side"


def _problems(read, root):
    with pytest.raises(data.MetadataError) as info:
        read(root)
    return info.value.problems, str(info.value)


def _image_line(fake, rel):
    """Line number of ``rel`` in the fixture's images.txt (ids are line numbers)."""
    return 1 + sorted(fake.labels, key=lambda p: int(p.rsplit("_", 1)[1].split(".")[0])).index(rel)


@pytest.fixture
def cub(tmp_path):
    fake = fixtures.make_cub(str(tmp_path))
    return fake, lambda name: os.path.join(fake.root, name)


def test_cub_image_id_listed_twice_is_not_a_silent_relabel(cub, tmp_path):
    # the case: id 5 again, on a line naming a test image; the last line used to win
    fake, path = cub
    test_image = [p for p, c in fake.labels.items() if c == 101][0]
    fixtures.edit_lines(path("images.txt"), lambda lines: lines + [f"5 {test_image}"])
    problems, message = _problems(data.read_cub, str(tmp_path))
    assert problems == [f"{path('images.txt')}:37: image id 5 is listed again (first at line 5)."]
    assert "Nothing was read" in message
    with pytest.raises(data.MetadataError, match="images.txt:37: image id 5 is listed again"):
        prepare("cub", str(tmp_path), check="exist", progress=False)
    assert not (tmp_path / "split_index.csv").exists()
    assert (tmp_path / "metadata_problems.txt").read_text().splitlines() == problems


def test_cub_image_with_two_class_lines(cub, tmp_path):
    _, path = cub
    fixtures.edit_lines(path("image_class_labels.txt"), lambda lines: lines + ["7 101"])
    problems, _ = _problems(data.read_cub, str(tmp_path))
    assert problems == [f"{path('image_class_labels.txt')}:37: image id 7 is listed again (first at line 7)."]


@pytest.mark.parametrize(
    "label, expected",
    [
        ("999", "class 999 is not in classes.txt."),
        ("150", "class 150 is not in classes.txt."),  # a CUB id, but not in this classes.txt
        ("0", "class id 0 is not a positive integer."),
        ("one", "class id 'one' is not an integer."),
    ],
)
def test_cub_class_outside_classes_txt(cub, tmp_path, label, expected):
    fake, path = cub
    fixtures.edit_lines(path("image_class_labels.txt"), lambda lines: [*lines[:2], f"3 {label}", *lines[3:]])
    problems, _ = _problems(data.read_cub, str(tmp_path))
    assert problems[-1] == f"{path('image_class_labels.txt')}:3: {expected}"
    if label.isdigit() and int(label) > 0:  # and the fixture's folders are class names: the folder contradicts it
        rel = [p for p in fake.labels if p.endswith("_3.jpg")][0]
        assert problems[:-1] == [
            f"{path('image_class_labels.txt')}:3: image 3 has class {label} but its file {rel} is in the folder of "
            "class 1 (001.Bird_Species_1)."
        ]
    else:
        assert len(problems) == 1


def test_cub_non_integer_and_unmatched_ids(cub, tmp_path):
    fake, path = cub
    fixtures.edit_lines(path("images.txt"), lambda lines: [*lines[:2], "x3 " + lines[2].split()[1], *lines[3:]])
    fixtures.edit_lines(path("image_class_labels.txt"), lambda lines: lines + ["40 1"])
    problems, _ = _problems(data.read_cub, str(tmp_path))
    assert problems == [
        f"{path('images.txt')}:3: image id 'x3' is not an integer.",
        f"{path('image_class_labels.txt')}:3: image 3 is not in images.txt.",
        f"{path('image_class_labels.txt')}:37: image 40 is not in images.txt.",
        f"{path('bounding_boxes.txt')}:3: image 3 is not in images.txt.",
    ]


def test_cub_label_contradicting_the_image_folder(cub, tmp_path):
    fake, path = cub
    fixtures.edit_lines(path("image_class_labels.txt"), lambda lines: [*lines[:1], "2 2", *lines[2:]])
    problems, _ = _problems(data.read_cub, str(tmp_path))
    rel = [p for p in fake.labels if p.endswith("_2.jpg")][0]
    assert problems == [
        f"{path('image_class_labels.txt')}:2: image 2 has class 2 but its file {rel} is in the folder of class 1 "
        "(001.Bird_Species_1)."
    ]


def test_cub_one_file_under_two_ids_in_both_splits(cub, tmp_path):
    # a layout whose folders are not class names: only the repeated path shows the leak
    fake, path = cub
    test_image = [p for p, c in fake.labels.items() if c == 101][0]
    fixtures.edit_lines(path("images.txt"), lambda lines: lines + [f"37 own/{test_image}"])
    fixtures.edit_lines(path("image_class_labels.txt"), lambda lines: lines + ["37 1"])
    fixtures.edit_lines(path("bounding_boxes.txt"), lambda lines: lines + ["37 1 1 5 5"])
    own_line = _image_line(fake, test_image)
    fixtures.edit_lines(
        path("images.txt"), lambda lines: [*lines[: own_line - 1], f"{own_line} own/{test_image}", *lines[own_line:]]
    )
    problems, _ = _problems(data.read_cub, str(tmp_path))
    assert problems == [
        f"{path('images.txt')}:37: own/{test_image} is listed again (first at {path('images.txt')}:{own_line}, "
        "now in the train split after the test split)."
    ]


def test_cub_bad_and_missing_boxes(cub, tmp_path):
    _, path = cub
    fixtures.edit_lines(path("bounding_boxes.txt"), lambda lines: [*lines[:3], "4 1 2 0 5", "5 1 2 a 5", *lines[6:-1]])
    problems, _ = _problems(data.read_cub, str(tmp_path))
    assert problems == [
        f"{path('bounding_boxes.txt')}:4: box [1.0, 2.0, 0.0, 5.0] is not (x, y, width, height) with a positive "
        "width and height.",
        f"{path('bounding_boxes.txt')}:5: box '1 2 a 5' is not four numbers.",
        f"{path('bounding_boxes.txt')}: no box for 4 images, e.g. image ids [4, 5, 6, 36].",
    ]


@pytest.mark.realdata
def test_cub_real_metadata_passes_every_check(cub_sample_dir):
    index = data.read_cub(str(cub_sample_dir))
    assert (len(index), index.num_classes, len(index.class_names)) == (11788, 200, 200)


@pytest.fixture
def cars(tmp_path):
    fixtures.make_cars196(str(tmp_path))
    return str(tmp_path), os.path.join(str(tmp_path), "cars_annos.mat")


def test_cars196_bad_annotations(cars):
    base, mat = cars

    def lie(records):
        records[3]["class"] = 0
        records[4]["class"] = 3.5
        records[5]["class"] = "seven"
        records[6]["relative_im_path"] = records[20]["relative_im_path"]  # class 1 and class 99: a leak
        records[7]["bbox_x2"] = 1
        records[8]["class"] = 150  # a Cars196 id, but not in this file's class_names (1-101)
        return records

    fixtures.edit_cars_annotations(base, lie)
    problems, _ = _problems(data.read_cars196, base)
    assert problems == [
        f"{mat}:annotation 5: expected an integer, got 3.5.",
        f"{mat}:annotation 6: expected a number, got 'seven'.",
        f"{mat}:annotation 8 (car_ims/000008.jpg): box x1={int(problems[2].split('x1=')[1].split()[0])} "
        + problems[2].split("x1=")[1].split(" ", 1)[1],
        f"{mat}:annotation 4 (car_ims/000004.jpg): class 0 is not in class_names of cars_annos.mat.",
        f"{mat}:annotation 9 (car_ims/000009.jpg): class 150 is not in class_names of cars_annos.mat.",
        f"{mat}:annotation 21 (car_ims/000021.jpg): car_ims/000021.jpg is listed again (first at {mat}:annotation 7 "
        "(car_ims/000021.jpg), now in the test split after the train split).",
    ]
    assert "is empty" in problems[2]


@pytest.mark.realdata
def test_cars196_real_annotations_pass_every_check():
    if not (CARS_TRAIN_SIDE / "cars_annos.mat").exists():
        pytest.skip(f"real Cars196 training side not found at {CARS_TRAIN_SIDE}")
    index = data.read_cars196(str(CARS_TRAIN_SIDE))
    assert (len(index), index.num_classes) == (8054, 98)


@pytest.fixture
def sop(tmp_path):
    fake = fixtures.make_sop(str(tmp_path))
    return str(tmp_path), lambda name: os.path.join(fake.root, name)


def test_sop_ids_paths_and_classes_across_the_two_files(sop):
    base, path = sop
    first_train = open(path("Ebay_train.txt")).read().splitlines()[1].split()  # line 2
    first_test = open(path("Ebay_test.txt")).read().splitlines()[1].split()
    super_11321 = [line.split()[2] for line in open(path("Ebay_test.txt")) if line.split()[1] == "11321"][0]
    fixtures.edit_lines(
        path("Ebay_test.txt"),
        lambda lines: lines
        + [
            f"{first_train[0]} 11319 {first_test[2]} other.JPG",  # line 20: the image id of Ebay_train.txt:2
            f"9001 11319 {first_test[2]} {first_train[3]}",  # 21: a training image listed as a test image
            f"9002 {first_train[1]} {first_train[2]} cabinet_final/x.JPG",  # 22: a training class in the test file
            "9003 11321 7 y.JPG",  # 23: another super class for class 11321
            "9004 11322 1 ",  # 24: three fields
            "9005 abc 1 z.JPG",  # 25
        ],
    )
    problems, _ = _problems(data.read_sop, base)
    first_11321 = 1 + [line.split()[1] for line in open(path("Ebay_test.txt"))].index("11321")
    assert [p.replace(os.path.dirname(path("x")) + "/", "") for p in problems] == [
        "Ebay_test.txt:24: expected 4 fields, got '9004 11322 1'.",
        f"Ebay_test.txt:20: image id {first_train[0]} is listed again (first at Ebay_train.txt:2).",
        f"Ebay_test.txt:22: class {first_train[1]} is outside the test class ids 11319-22634 of Ebay_test.txt.",
        f"Ebay_test.txt:23: class 11321 has super class 7 here but {super_11321} at Ebay_test.txt:{first_11321}.",
        "Ebay_test.txt:25: class id 'abc' is not an integer.",
        f"Ebay_test.txt:21: {first_train[3]} is listed again (first at Ebay_train.txt:2, now in the test split "
        "after the train split).",
        f"Ebay_test.txt:22: class {first_train[1]} is in the test split here but in the train split at "
        "Ebay_train.txt:2 (the splits are by class).",
    ]


def test_prepared_csv_edited_by_hand(tmp_path):
    fixtures.make_sop(str(tmp_path))
    prepare("sop", str(tmp_path), check="exist", progress=False)
    csv_file = str(tmp_path / data.INDEX_FILENAME)
    # line 4: class 1 moved to the test split; line 5: a label that is not a number; the last line repeats line 6
    fixtures.edit_lines(
        csv_file,
        lambda lines: [*lines[:3], lines[3].replace(",train,", ",test,"), lines[4].replace(",1,", ",x,", 1)]
        + [*lines[5:], lines[5]],
    )
    with pytest.raises(data.MetadataError) as info:
        data.load_split_index("sop", str(tmp_path))
    problems = info.value.problems
    assert problems[0] == f"{csv_file}:5: label 'x' is not an integer."
    assert f"{csv_file}:{len(open(csv_file).read().splitlines())}: " in problems[1] and "is listed again" in problems[1]
    assert problems[2].startswith(f"{csv_file}:4: class 1 is in the test split here but in the train split at")


def test_prepare_reports_classes_listed_without_images(tmp_path):
    fake = fixtures.make_cub(str(tmp_path))
    root = fake.root
    for name in ("images.txt", "image_class_labels.txt", "bounding_boxes.txt"):
        fixtures.edit_lines(os.path.join(root, name), lambda lines: lines[:-4])  # class 104's four images
    summary = prepare("cub", str(tmp_path), check="exist", progress=False)
    assert summary["classes"] == 8 and summary["classes_listed"] == 9
    assert summary["classes_without_images"] == [104]
    assert "1 listed classes have no image, e.g. [104]" in summary["notes"]
    assert "classes: 8, published 200" in summary["notes"]
    np.testing.assert_array_equal(data.load_split_index("cub", str(tmp_path)).classes, [1, 2, 3, 4, 5, 101, 102, 103])
