"""sip-sms-bridge: SIP MESSAGE <-> carrier SMS/MMS."""

__version__ = "0.1.0"
