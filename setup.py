"""Packaging for seatrial: reads settings.ini, the one place nbdev and pip agree on."""
from configparser import ConfigParser
from pathlib import Path

import setuptools

cfg = ConfigParser(delimiters=["="])
cfg.read("settings.ini", encoding="utf-8")
cfg = cfg["DEFAULT"]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    author=cfg["author"],
    author_email=cfg["author_email"],
    license="Apache-2.0",
    python_requires=">=" + cfg["min_python"],
    package_dir={"": "src"},
    packages=setuptools.find_packages("src"),
    package_data={"seatrial": ["data/*.json"]},
    data_files=[("share/seatrial/pipeline", [str(p) for p in sorted(Path("nbs/pipeline").glob("[0-9][0-9]_*.ipynb"))])],
    install_requires=cfg["requirements"].split(),
    extras_require={"dev": cfg["dev_requirements"].split()},
    entry_points={"console_scripts": cfg["console_scripts"].split()},
    zip_safe=False,
)
