"""The caller directory: each CRM's phone book kept in the embedded store, by E.164.

CRM users type numbers freely (``+34 911 234 567``, ``0034911234568``, ``+1 (212) 555-0100``)
and CRMs match them as text, so a live query while the phone rings both misses and costs a
round trip. ``DirectorySync`` pulls every record's phone fields from each connector that can
(``connectors.base.DirectorySource``), ``DirectoryStore`` keeps them normalised under the
E.164 index, and the lookup chain reads them as fast as a local contact.
"""

from gateway.directory.store import DirectoryStore, SyncState
from gateway.directory.sync import DirectorySync, SyncReport

__all__ = ["DirectoryStore", "DirectorySync", "SyncReport", "SyncState"]
