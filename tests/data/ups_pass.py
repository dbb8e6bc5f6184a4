"""net-snmp `pass` script serving a small UPS-MIB (RFC 1628) table, so tests read UPS values through a
real snmpd. Usage (snmpd.conf): pass .1.3.6.1.2.1.33 /path/to/python /path/to/ups_pass.py"""

import sys

UPS = "1.3.6.1.2.1.33.1."
DATA = {
    "1.1.0": ("string", "APC"),  # upsIdentManufacturer
    "1.2.0": ("string", "Smart-UPS 3000"),  # upsIdentModel
    "2.1.0": ("integer", "2"),  # upsBatteryStatus: batteryNormal
    "2.2.0": ("integer", "120"),  # upsSecondsOnBattery
    "2.3.0": ("integer", "47"),  # upsEstimatedMinutesRemaining
    "2.4.0": ("integer", "96"),  # upsEstimatedChargeRemaining
    "2.5.0": ("integer", "545"),  # upsBatteryVoltage, 0.1 V
    "3.3.1.3.1": ("integer", "0"),  # upsInputVoltage, three lines, mains gone
    "3.3.1.3.2": ("integer", "0"),
    "3.3.1.3.3": ("integer", "0"),
    "4.1.0": ("integer", "5"),  # upsOutputSource: battery
    "4.4.1.2.1": ("integer", "230"),  # upsOutputVoltage
    "4.4.1.5.1": ("integer", "37"),  # upsOutputPercentLoad
}
ROWS = sorted(((tuple(int(p) for p in (UPS + k).split(".")), v) for k, v in DATA.items()), key=lambda r: r[0])


def main() -> None:
    mode, oid = sys.argv[1], tuple(int(p) for p in sys.argv[2].lstrip(".").split("."))
    for key, (typ, value) in ROWS:
        if (mode == "-g" and key == oid) or (mode == "-n" and key > oid):
            print("." + ".".join(map(str, key)))
            print(typ)
            print(value)
            return


if __name__ == "__main__":
    main()
