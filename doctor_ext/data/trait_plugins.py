"""Ceilometer trait plugins used by doctor-ext's event definitions.

Ceilometer converts a typed trait (``type: int``, ``float`` or ``datetime``)
with ``int()``, ``float()`` or an ISO 8601 parser, and a value that does not
convert makes the whole notification fail. With ``[notification]
ack_on_event_error = False`` (which doctor-ext needs, so that a notification
the evaluator could not take yet is requeued) such a notification is
requeued for ever: one malformed report from a monitor keeps a listener
thread busy and the queue never drains.

``doctor_typed`` (stevedore namespace ``ceilometer.event.trait_plugin``)
checks each value against the trait's type first: a value that would not
convert is logged and left out (the event has no such trait, as when the
field is missing), and the rest of the notification goes on. It can also
map values first, as Ceilometer's ``map`` plugin does (whose lookup of an
unhashable value, a list or a dict, raises as well)::

    fault_time:
      type: datetime
      fields: payload.time
      plugin:
        name: doctor_typed
        parameters: {type: datetime}

    forced_down:
      type: int
      fields: payload.'nova_object.data'.forced_down
      plugin:
        name: doctor_typed
        parameters:
          type: int
          values: {true: 1, false: 0, 'true': 1, 'false': 0}
          case_sensitive: false

``tools/gen_event_definitions.py`` puts it on every typed trait of the
definitions it writes for doctor-ext's event types.
"""

from ceilometer.event import models
from ceilometer.event import trait_plugins
from oslo_log import log

LOG = log.getLogger(__name__)

NAME = 'doctor_typed'
TYPES = {'int': models.Trait.INT_TYPE, 'float': models.Trait.FLOAT_TYPE,
         'datetime': models.Trait.DATETIME_TYPE,
         'text': models.Trait.TEXT_TYPE}


def _short(value, limit=64):
    try:
        text = repr(value)
    except Exception:
        return '<unprintable %s>' % type(value).__name__
    return text if len(text) <= limit else text[:limit] + '...'


class TypedTraitPlugin(trait_plugins.TraitPluginBase):
    """Keep the values that convert to the trait's type; log the others.

    :param type: the trait's type: ``int``, ``float``, ``datetime`` or
        ``text`` (the ``type`` of the trait definition, repeated: a plugin
        is not told it).
    :param values: optional mapping applied first (Ceilometer's ``map``);
        a value it does not hold maps to ``default`` (None: no trait).
    :param default: see ``values``.
    :param case_sensitive: whether string keys of ``values`` match case.
    """

    def __init__(self, type='text', values=None, default=None,
                 case_sensitive=True, **kw):
        if type not in TYPES:
            raise ValueError('%s trait plugin: type must be one of %s, not '
                             '%r' % (NAME, ', '.join(sorted(TYPES)), type))
        if values is not None and not isinstance(values, dict):
            raise ValueError('%s trait plugin: values must be a mapping'
                             % NAME)
        self.trait_type = TYPES[type]
        self.type_name = type
        self.case_sensitive = case_sensitive
        self.values = None
        if values is not None:
            self.values = {self._fold(k): v for k, v in values.items()}
        self.default = default
        super().__init__(**kw)

    def _fold(self, key):
        if not self.case_sensitive and isinstance(key, str):
            return key.casefold()
        return key

    def _map(self, path, value):
        try:
            return self.values[self._fold(value)]
        except (KeyError, TypeError):   # TypeError: a list or a mapping
            LOG.warning('Unknown value %s of %s, mapped to the default %r',
                        _short(value), path, self.default)
            return self.default

    def trait_values(self, match_list):
        out = []
        for path, value in match_list:
            if self.values is not None:
                value = self._map(path, value)
            if value is None or (value == '' and self.type_name != 'text'):
                # Ceilometer's own rule: '' (Nova's empty date) is no value.
                out.append(None)
                continue
            try:
                models.Trait.convert_value(self.trait_type, value)
            except Exception as e:
                LOG.warning('Ignoring %s = %s: not a valid %s (%s)', path,
                            _short(value), self.type_name,
                            _short(str(e), 120))
                value = None
            out.append(value)
        return out
