"""Packaging for dcdc_batt_comm: sources live under drivers/ (spec 3)."""
from setuptools import setup

setup(
    name="dcdc_batt_comm",
    version="1.4.0",
    description=("APIS device driver: TDK-Lambda EZA2500 DC/DC converter and "
                 "Modbus battery behind the apis-main Web API"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    package_dir={"": "drivers"},
    packages=["essx", "eza2500", "battery_emulator"],
    py_modules=["essx_server"],
    data_files=[("share/dcdc_batt_comm", ["drivers/dcdc_batt_comm.yml", "drivers/openapi.json"])],
    # Ranges are the ones the test suite ran against.
    install_requires=[
        "bottle>=0.12.25,<0.14",
        "waitress>=3.0,<4",
        "PyYAML>=6.0,<7",
        "pyserial>=3.5,<4",
        "pymodbus>=3.16,<3.17",
    ],
    extras_require={
        "bbb": ["Adafruit_BBIO>=1.2,<2"],
        "gpiod": ["gpiod>=2.1,<3"],
        "test": [
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
            "psutil>=5.9,<8",
            "jsonschema>=4.17,<5",
            "openapi-spec-validator>=0.7,<1",
        ],
    },
    entry_points={"console_scripts": ["essx-server=essx_server:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Hardware :: Hardware Drivers",
    ],
)
