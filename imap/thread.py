"""THREAD: the ORDEREDSUBJECT and REFERENCES threading algorithms and their response (ring 0, pure).

Owns RFC 5256 §3 THREAD=ORDEREDSUBJECT and THREAD=REFERENCES over the `SortFacts` of the
searched messages (`courriel.imap.sort`), and the encoding of the result as the thread-list
of the `* THREAD` response ("(1 2)(3 (4)(5))"). Threads are `Node` trees whose leaves and
inner nodes carry a message or are dummies (a message that is referenced but not in the
searched set).

Standards: RFC 5256 §2.1 (base subject; a reply or forward), §2.2 (sent date), §3 (THREAD
command, ORDEREDSUBJECT, REFERENCES steps 1-6, thread-list syntax of §4), RFC 5322 §3.6.4
(message identifiers; compared case-sensitively).
Security: the references come from untrusted headers: loops are refused when links are made
(step 1), every walk is iterative (no recursion on the depth of a thread), and a loop check walks
up from the new parent only when the new child already has children of its own.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

from courriel.imap.sort import SortFacts, casemap, sent_date
from courriel.mime_search import message_ids

__all__ = ["ALGORITHMS", "Node", "encode", "ordered_subject", "references", "thread"]

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


class Node:
    """One place in a thread: a message, or a dummy (`message is None`)."""

    __slots__ = ("children", "message", "parent")

    def __init__(self, message: SortFacts | None = None):
        self.message = message
        self.parent: Node | None = None
        self.children: list[Node] = []

    @property
    def dummy(self) -> bool:
        return self.message is None

    def add(self, child: Node) -> None:
        child.parent = self
        self.children.append(child)

    def remove(self, child: Node) -> None:
        self.children.remove(child)
        child.parent = None

    def __repr__(self) -> str:  # for test failures
        label = "dummy" if self.message is None else str(self.message.msn)
        return f"Node({label}, {self.children!r})" if self.children else f"Node({label})"


def _date_key(message: SortFacts) -> tuple:
    # RFC 5256 §2.2: by sent date; equal dates keep mailbox order.
    return sent_date(message), message.msn


def _node_key(node: Node) -> tuple:
    """RFC 5256 §3 REFERENCES steps 4 and 6: a dummy sorts as its first child."""
    for _ in range(3):  # after pruning (step 3) and merging (step 5) a dummy's children are messages
        if node.message is not None:
            return _date_key(node.message)
        if not node.children:
            break
        node = node.children[0]
    return ()


# ------------------------------------------------------------------ ORDEREDSUBJECT


def ordered_subject(messages: Iterable[SortFacts]) -> list[Node]:
    """RFC 5256 §3 ORDEREDSUBJECT: messages sorted by base subject then sent date, grouped by base
    subject; in each thread the first message is the root and the others are its children; the
    threads are sorted by the sent date of their first message."""
    groups: dict[str, list[SortFacts]] = {}
    for message in sorted(messages, key=_date_key):
        groups.setdefault(casemap(message.base_subject), []).append(message)
    threads = []
    for members in groups.values():
        root = Node(members[0])
        for message in members[1:]:
            root.add(Node(message))
        threads.append(root)
    threads.sort(key=_node_key)
    return threads


# ------------------------------------------------------------------ REFERENCES


def _would_loop(parent: Node, child: Node) -> bool:
    """Whether making `parent` the parent of `child` makes a loop (parent is child or below it)."""
    if not child.children:  # the usual case (a message seen for the first time): no walk
        return parent is child
    node: Node | None = parent
    while node is not None:
        if node is child:
            return True
        node = node.parent
    return False


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None:
        child.parent.remove(child)
    parent.add(child)


def references(messages: Iterable[SortFacts]) -> list[Node]:
    """RFC 5256 §3 THREAD=REFERENCES, steps 1 to 6; returns the threads (children of the root)."""
    ordered = sorted(messages, key=lambda m: m.msn)
    table: dict[str, Node] = {}  # step 1: msg-id -> node (a dummy until its message is seen)
    nodes: list[Node] = []  # every node, in creation order

    def node_for(msg_id: str) -> Node:
        found = table.get(msg_id)
        if found is None:
            found = table[msg_id] = Node()
            nodes.append(found)
        return found

    for message in ordered:
        # Step 1: a message without a valid Message-ID, or whose id an earlier (lower numbered)
        # message already has, gets a unique id of its own (a node outside the table).
        own_ids = message_ids(message.message_id)
        own = table.get(own_ids[0]) if own_ids else None
        if own is not None and own.message is None:
            own.message = message
        else:
            own = Node(message)
            nodes.append(own)
            if own_ids and own_ids[0] not in table:
                table[own_ids[0]] = own
        refs = [node_for(msg_id) for msg_id in message.reference_ids]
        # Step 1A: link the references in order, first the parent of the second, and so on; a
        # node that already has a parent keeps it; no link that would make a loop.
        for parent, child in itertools.pairwise(refs):
            if child.parent is None and not _would_loop(parent, child):
                parent.add(child)
        # Step 1B: the last reference becomes the message's parent (replacing a parent from a
        # truncated References line); no references means no parent; no loops.
        if own.parent is not None:
            own.parent.remove(own)
        if refs and not _would_loop(refs[-1], own):
            refs[-1].add(own)
    # Step 2: the messages without parent are the children of the root.
    root = Node()
    for node in nodes:
        if node.parent is None:
            root.add(node)
    # Step 3: prune dummies.
    root.children = _pruned(root.children, at_root=True)
    for node in root.children:
        node.parent = root
    # Step 4: sort the top level by sent date (a dummy by its first child, once its children are sorted).
    for node in root.children:
        if node.dummy:
            node.children.sort(key=_node_key)
    root.children.sort(key=_node_key)
    # Step 5: gather the threads that share a base subject.
    _merge_subjects(root)
    # Step 6: sort every set of siblings by sent date, the deepest first.
    _sort_siblings(root)
    return root.children


def _pruned(children: list[Node], at_root: bool) -> list[Node]:
    """Step 3: a dummy without children goes; a dummy with children is replaced by them, except at
    the top level where that is done only when it has one child. Children are pruned first."""
    visits: list[tuple[Node, bool]] = []  # pre-order: a parent before its descendants
    stack = [(child, at_root) for child in children]
    while stack:
        node, top = stack.pop()
        visits.append((node, top))
        stack.extend((child, False) for child in node.children)
    decided: dict[int, list[Node]] = {}  # id(node) -> what replaces it among its siblings
    for node, top in reversed(visits):  # descendants before their parents
        node.children = [kept for child in node.children for kept in decided[id(child)]]
        for child in node.children:
            child.parent = node
        if node.dummy and not node.children:
            decided[id(node)] = []
        elif node.dummy and (not top or len(node.children) == 1):
            decided[id(node)] = node.children
        else:
            decided[id(node)] = [node]
    return [kept for child in children for kept in decided[id(child)]]


def _thread_subject(node: Node) -> str:
    """Step 5B: the base subject of the message, or of the first child of a dummy."""
    message = node.message if node.message is not None else (node.children[0].message if node.children else None)
    return casemap(message.base_subject) if message is not None else ""


def _is_reply(node: Node) -> bool:
    return node.message is not None and node.message.reply_or_forward


def _merge_subjects(root: Node) -> None:
    # Step 5A-C: the subject table.
    table: dict[str, Node] = {}
    for node in root.children:
        subject = _thread_subject(node)
        if not subject:
            continue
        current = table.get(subject)
        # Replace a message by a dummy, or a reply by a message that is not one.
        replace = current is not None and not current.dummy and (
            node.dummy or (_is_reply(current) and not _is_reply(node)))
        if current is None or replace:
            table[subject] = node
    # Step 5D: merge the threads with the same subject.
    for node in list(root.children):
        subject = _thread_subject(node)
        if not subject or node.parent is not root:  # already merged into a later thread's dummy
            continue
        kept = table[subject]
        if kept is node:
            continue
        if kept.dummy and node.dummy:
            root.remove(node)
            for child in list(node.children):
                kept.add(child)
            node.children = []
        elif kept.dummy or (_is_reply(node) and not _is_reply(kept)):
            root.remove(node)
            kept.add(node)
        else:
            dummy = Node()
            position = root.children.index(kept)
            root.remove(kept)
            root.remove(node)
            dummy.add(kept)
            dummy.add(node)
            dummy.parent = root
            root.children.insert(position, dummy)
            table[subject] = dummy


def _sort_siblings(root: Node) -> None:
    # Step 6: post-order, so that a dummy's first child is known when its parent's set is sorted.
    stack = [(root, False)]
    while stack:
        node, visited = stack.pop()
        if visited:
            node.children.sort(key=_node_key)
            continue
        stack.append((node, True))
        stack.extend((child, False) for child in node.children)


# ------------------------------------------------------------------ the response


def thread(algorithm: str, messages: Iterable[SortFacts]) -> list[Node]:
    """The threads of `messages` under an RFC 5256 algorithm name (upper case)."""
    if algorithm == "ORDEREDSUBJECT":
        return ordered_subject(messages)
    if algorithm == "REFERENCES":
        return references(messages)
    raise ValueError(f"unknown THREAD algorithm {algorithm}")


def encode(threads: list[Node], uid: bool = False) -> str:
    """RFC 5256 §4 thread-list text of the `* THREAD` response: one "(...)" per thread. A chain of
    only children is written flat ("1 2 3"); several children are written as nested lists
    ("1 (2)(3 4)"); a dummy root is written as the nested lists of its children ("((1)(2))")."""
    return "".join(_encode_one(node, uid) for node in threads)


def _number(node: Node, uid: bool) -> str:
    return str(node.message.uid if uid else node.message.msn)


def _encode_one(top: Node, uid: bool) -> str:
    # Iterative: a long reply chain must not hit the recursion limit.
    out: list[str] = []
    stack: list[Node | str] = [top]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        out.append("(")
        node = item
        numbers = []
        while node.dummy and len(node.children) == 1:
            node = node.children[0]
        if not node.dummy:
            numbers.append(_number(node, uid))
            while len(node.children) == 1 and not node.children[0].dummy:
                node = node.children[0]
                numbers.append(_number(node, uid))
        out.append(" ".join(numbers))
        if node.children:
            if numbers:
                out.append(" ")
            stack.append(")")
            stack.extend(reversed(node.children))
        else:
            out.append(")")
    return "".join(out)
