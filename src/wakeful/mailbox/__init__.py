"""The mailbox: durable mail, channels, request/reply and delegation between agents."""

from wakeful.core.mail import Address, AddressKind, Mail, MailDraft, MailFilter, parse_address
from wakeful.core.mail_records import Sent
from wakeful.mailbox.service import Mailbox
from wakeful.store.mail import MailStore, MemoryMailStore

__all__ = [
    "Address",
    "AddressKind",
    "Mail",
    "MailDraft",
    "MailFilter",
    "MailStore",
    "Mailbox",
    "MemoryMailStore",
    "Sent",
    "parse_address",
]
