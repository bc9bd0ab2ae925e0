#!/usr/bin/perl

# Lists: pagination (limit, offset, next, previous), filters and ordering
# of remotes and distributions, and the task list.

use strict;
use warnings;

use Test::More;
use PT::Nginx;
use PT::Pulp;

# registry.example: a name of the server, for the Host header below
my $t = PT::Nginx->new(conf => admin_conf(server => 'server_name registry.example;'))->start;
my $base = $t->base_url;

sub names { [ map { $_->{name} } @{ $_[0] } ] }

sub query {
    my ($url) = @_;
    my ($path, $q) = split /\?/, $url // '', 2;
    my %q = map { my ($k, $v) = split /=/, $_, 2; ($k => $v // '') } grep { length } split /&/, $q // '';
    return ($path, \%q);
}

# a next/previous link: absolute, on the list's path, with these parameters
# (offset => 0 also matches a link without offset)
sub is_link {
    my ($link, $path, $want, $name) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;

    my ($p, $q) = query($link);
    my %w = %$want;
    delete $w{offset} if exists $w{offset} && $w{offset} eq '0' && !exists $q->{offset};
    my $flat = sub { my $h = shift; join '&', map { "$_=$h->{$_}" } sort keys %$h };
    ok(defined $link && $p eq "$base$path" && $flat->($q) eq $flat->(\%w), $name)
        or diag('got ' . ($link // 'null') . ", want $base$path?" . join '&', map { "$_=$want->{$_}" } sort keys %$want);
}

sub get_list {
    my ($url, $name) = @_;
    my $r = $t->get($url);
    is_json_status($r, 200, undef, "$name: 200");
    return $r->{json} || {};
}


# remotes, created in a known order

my @named = ('alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta',
             'iota', 'kappa', 'Lambda-X', 'my remote');
my @order = (@named, map { sprintf 'bulk-%03d', $_ } 0 .. 89);
my %href;
for my $name (@order) {
    $href{$name} = create_remote($t, name => $name, url => "https://$name.example"
                                 =~ s/ /-/gr)->{pulp_href};
}
my $total = @order;


# pagination

my $l = get_list($REMOTES, 'list');
is_deeply([ sort keys %$l ], [ qw(count next previous results) ], 'list keys');
is($l->{count}, $total, 'count');
is(scalar @{ $l->{results} }, 100, 'default limit 100');
is_link($l->{next}, $REMOTES, { limit => 100, offset => 100 }, 'next of the first page');
ok(exists $l->{previous} && !defined $l->{previous}, 'previous of the first page is null');
is_deeply([ sort @{ keys_of($l->{results}[0]) } ], [ sort @REMOTE_KEYS ], 'results are remotes');

my $l2 = get_list($l->{next}, 'second page');
is($l2->{count}, $total, 'second page count');
is(scalar @{ $l2->{results} }, $total - 100, 'second page has the rest');
ok(exists $l2->{next} && !defined $l2->{next}, 'next of the last page is null');
is_link($l2->{previous}, $REMOTES, { limit => 100, offset => 0 }, 'previous of the second page');

is_deeply(names([ @{ $l->{results} }, @{ $l2->{results} } ]), [ reverse @order ],
          'default ordering: newest first');

$l = get_list("$REMOTES?limit=5", 'limit=5');
is(scalar @{ $l->{results} }, 5, 'limit=5: 5 results');
is_deeply(names($l->{results}), [ (reverse @order)[0 .. 4] ], 'limit=5: the 5 newest');
is_link($l->{next}, $REMOTES, { limit => 5, offset => 5 }, 'limit=5: next');

$l = get_list("$REMOTES?limit=5&offset=10", 'limit=5&offset=10');
is_deeply(names($l->{results}), [ (reverse @order)[10 .. 14] ], 'offset=10: items 10 to 14');
is_link($l->{next}, $REMOTES, { limit => 5, offset => 15 }, 'offset=10: next');
is_link($l->{previous}, $REMOTES, { limit => 5, offset => 5 }, 'offset=10: previous');

$l = get_list("$REMOTES?offset=3&limit=5", 'offset before limit');
is_deeply(names($l->{results}), [ (reverse @order)[3 .. 7] ], 'parameters in any order');

$l = get_list("$REMOTES?limit=5&offset=100", 'limit=5&offset=100');
is(scalar @{ $l->{results} }, $total - 100, 'last partial page');
ok(!defined $l->{next}, 'last partial page: next null');
is_link($l->{previous}, $REMOTES, { limit => 5, offset => 95 }, 'last partial page: previous');

$l = get_list("$REMOTES?offset=500", 'offset past the end');
is_deeply([ $l->{count}, $l->{results}, $l->{next} ], [ $total, [], undef ], 'offset past the end: empty page');

$l = get_list("$REMOTES?limit=1000", 'limit=1000');
is(scalar @{ $l->{results} }, $total, 'limit=1000: everything');
ok(!defined $l->{next} && !defined $l->{previous}, 'limit=1000: no next, no previous');

my $all = list_all($t, "$REMOTES?limit=7");
is_deeply(names($all), [ reverse @order ], 'walking next with limit=7 gives every remote once, in order');

$l = get_list("$REMOTES?foo=bar&limit=2", 'unknown parameter');
is($l->{count}, $total, 'unknown query parameters are ignored');

# next follows the Host header (behind a proxy) and keeps the filters
my $raw = $t->raw("GET $REMOTES?limit=1&name__startswith=bulk- HTTP/1.0\r\nHost: registry.example:8443\r\n\r\n");
is($raw->{status}, 200, 'list with another Host');
my ($p, $q) = query($raw->{json}{next});
is($p, "http://registry.example:8443$REMOTES", 'next uses the Host header');
is_deeply($q, { limit => 1, offset => 1, name__startswith => 'bulk-' }, 'next keeps the filter');

$all = list_all($t, "$REMOTES?name__startswith=bulk-&limit=10");
is_deeply(names($all), [ reverse grep { /^bulk-/ } @order ], 'walking a filtered list');


# filters

my %filters = (
    'name=beta'                          => [ 'beta' ],
    'name=Beta'                          => [],
    'name=bet'                           => [],
    'name=my%20remote'                   => [ 'my remote' ],
    'name=my+remote'                     => [ 'my remote' ],
    'name__contains=ta'                  => [ grep { /ta/ } @named ],
    'name__contains=TA'                  => [],
    'name__icontains=TA'                 => [ grep { /ta/i } @named ],
    'name__icontains=lambda'             => [ 'Lambda-X' ],
    'name__contains=Lambda'              => [ 'Lambda-X' ],
    'name__startswith=e'                 => [ 'epsilon', 'eta' ],
    'name__startswith=E'                 => [],
    'name__startswith=bulk-08'           => [ map { "bulk-08$_" } 0 .. 9 ],
    'name__in=alpha,beta,nosuch'         => [ 'alpha', 'beta' ],
    'name__in=alpha,my%20remote'         => [ 'alpha', 'my remote' ],
    'name__in=nosuch'                    => [],
    'name__contains=a&name__startswith=b' => [ grep { /a/ && /^b/ } @order ],
);
for my $f (sort keys %filters) {
    my $all = eval { list_all($t, "$REMOTES?$f") };
    my %want = map { $_ => 1 } @{ $filters{$f} };
    is_deeply([ sort @{ names($all || []) } ], [ sort keys %want ], "filter $f") or diag($@);
}
$l = get_list("$REMOTES?name__contains=a&limit=1", 'count of a filtered list');
is($l->{count}, scalar(grep { /a/ } @order), 'count of a filtered list is the filtered total');


# ordering

my @lower = grep { /^[a-z]+$/ } @named;
my $in = 'name__in=' . join ',', @lower;
is_deeply(names(list_all($t, "$REMOTES?$in&ordering=name")), [ sort @lower ], 'ordering=name');
is_deeply(names(list_all($t, "$REMOTES?$in&ordering=-name")), [ reverse sort @lower ], 'ordering=-name');
is_deeply(names(list_all($t, "$REMOTES?ordering=pulp_created")), \@order, 'ordering=pulp_created');
is_deeply(names(list_all($t, "$REMOTES?ordering=-pulp_created")), [ reverse @order ], 'ordering=-pulp_created');

my @tasks;
push @tasks, task_of($t, $t->patch($href{alpha}, { url => 'https://alpha2.example' }))->{pulp_href};
my $byupd = names(list_all($t, "$REMOTES?ordering=-pulp_last_updated"));
is($byupd->[0], 'alpha', 'ordering=-pulp_last_updated: the patched one first');
is_deeply([ @$byupd[1 .. $#$byupd] ], [ reverse grep { $_ ne 'alpha' } @order ], 'then the others, newest first');
$byupd = names(list_all($t, "$REMOTES?ordering=pulp_last_updated"));
is($byupd->[-1], 'alpha', 'ordering=pulp_last_updated: the patched one last');

$l = get_list("$REMOTES?ordering=name&limit=3&$in", 'ordering with limit');
is_deeply(names($l->{results}), [ (sort @lower)[0 .. 2] ], 'ordering applies before the page');
($p, $q) = query($l->{next});
is($q->{ordering}, 'name', 'next keeps ordering');

for my $o (qw(foo -foo url)) {
    is_json_status($t->get("$REMOTES?ordering=$o"), 400,
                   { ordering => [ "Select a valid choice. $o is not one of the available choices." ] },
                   "ordering=$o: 400");
}


# distributions

my @dists = ([ 'Docker Hub', 'docker-cache' ], [ 'quay', 'quay/cache' ], [ 'ghcr', 'ghcr' ],
             [ 'gcr', 'gcr/mirror' ], [ 'k8s', 'registry.k8s.io' ], [ 'dock', 'dock' ]);
my %dhref;
for my $d (@dists) {
    my $r = $t->post($DISTS, { name => $d->[0], base_path => $d->[1], remote => $href{beta} });
    my $task = task_of($t, $r);
    push @tasks, $task->{pulp_href};
    $dhref{ $d->[0] } = $task->{created_resources}[0];
}

$l = get_list($DISTS, 'distribution list');
is($l->{count}, scalar @dists, 'distribution count');
is_deeply(names($l->{results}), [ reverse map { $_->[0] } @dists ], 'distributions: newest first');
is_deeply([ sort @{ keys_of($l->{results}[0]) } ], [ sort @DIST_KEYS ], 'results are distributions');

$l = get_list("$DISTS?limit=2&offset=2", 'distributions limit=2&offset=2');
is_deeply(names($l->{results}), [ map { $_->[0] } @dists[3, 2] ], 'distributions page');
is_link($l->{next}, $DISTS, { limit => 2, offset => 4 }, 'distributions next');
is_link($l->{previous}, $DISTS, { limit => 2, offset => 0 }, 'distributions previous');
is_deeply(names(list_all($t, "$DISTS?limit=4")), [ reverse map { $_->[0] } @dists ], 'walking distributions');

my %dfilters = (
    'base_path=ghcr'                    => [ 'ghcr' ],
    'base_path=quay'                    => [],
    'base_path=quay/cache'              => [ 'quay' ],
    'base_path=quay%2Fcache'            => [ 'quay' ],
    'base_path__contains=cache'         => [ 'Docker Hub', 'quay' ],
    'base_path__contains=CACHE'         => [],
    'base_path__icontains=CACHE'        => [ 'Docker Hub', 'quay' ],
    'base_path__contains=.k8s.'         => [ 'k8s' ],
    'base_path__in=ghcr,gcr/mirror,x'   => [ 'ghcr', 'gcr' ],
    'base_path__in=dock'                => [ 'dock' ],
    'name=quay'                         => [ 'quay' ],
    'name=Docker%20Hub'                 => [ 'Docker Hub' ],
    'name__contains=Docker'             => [ 'Docker Hub' ],
    'name__contains=docker'             => [],
    'name__icontains=DOCK'              => [ 'Docker Hub', 'dock' ],
    'name__startswith=g'                => [ 'ghcr', 'gcr' ],
    'name__in=quay,k8s'                 => [ 'quay', 'k8s' ],
    'name__startswith=g&base_path__contains=mirror' => [ 'gcr' ],
);
for my $f (sort keys %dfilters) {
    my $all = eval { list_all($t, "$DISTS?$f") };
    is_deeply([ sort @{ names($all || []) } ], [ sort @{ $dfilters{$f} } ], "distribution filter $f")
        or diag($@);
}
is_deeply(names(list_all($t, "$DISTS?ordering=pulp_created")), [ map { $_->[0] } @dists ],
          'distributions ordering=pulp_created');
is_deeply(names(list_all($t, "$DISTS?ordering=-name&name__in=quay,k8s,ghcr,gcr")), [ qw(quay k8s ghcr gcr) ],
          'distributions ordering=-name');
is_json_status($t->get("$DISTS?ordering=base_path__x"), 400,
               { ordering => [ 'Select a valid choice. base_path__x is not one of the available choices.' ] },
               'distributions: invalid ordering');


# pulp_label_select: Pulp's label filter, on every list of labelled objects

my %labelled = (lab1 => { env => 'prod', team => 'Platform' }, lab2 => { env => 'dev' }, lab3 => {});
for my $name (sort keys %labelled) {
    create_remote($t, name => $name, url => "https://$name.example", pulp_labels => $labelled{$name});
}
my %select = (
    'env'                  => [ qw(lab1 lab2) ],
    '!env'                 => [ qw(lab3) ],
    'env=prod'             => [ qw(lab1) ],
    'env!=prod'            => [ qw(lab2) ],
    'team~plat'            => [ qw(lab1) ],
    'env,team'             => [ qw(lab1) ],
    'env=dev,!team'        => [ qw(lab2) ],
    'env=prod,env=dev'     => [],
    'nope'                 => [],
);
for my $sel (sort keys %select) {
    (my $q = $sel) =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    is_deeply([ sort @{ names(list_all($t, "$REMOTES?name__startswith=lab&pulp_label_select=$q")) } ],
              $select{$sel}, "pulp_label_select=$sel");
}
for my $bad ('', '=x', '!a=b', 'a!b', ',') {
    (my $q = $bad) =~ s/([^A-Za-z0-9_.~-])/sprintf('%%%02X', ord $1)/ge;
    is_json_status($t->get("$REMOTES?pulp_label_select=$q"), 400,
                   { pulp_label_select => [ 'Invalid label select: each term is key, !key, key=value, '
                                            . 'key!=value or key~value.' ] },
                   "pulp_label_select=$bad: a field error");
}
is(scalar @{ list_all($t, "$TASKS?pulp_label_select=env") }, scalar @{ list_all($t, $TASKS) },
   'on a list without labels it is ignored');


# tasks

push @tasks, task_of($t, $t->delete($dhref{dock}))->{pulp_href};

$l = get_list($TASKS, 'task list');
is($l->{count}, scalar @tasks, 'task count: one per PATCH, PUT, DELETE and distribution create');
is_deeply([ map { $_->{pulp_href} } @{ $l->{results} } ], [ reverse @tasks ], 'tasks: newest first');
ok(!grep({ my $x = $_; grep { !exists $x->{$_} } @TASK_KEYS } @{ $l->{results} }), 'results are tasks');
$l = get_list("$TASKS?limit=3", 'tasks limit=3');
is(scalar @{ $l->{results} }, 3, 'tasks limit=3: 3 results');
is_link($l->{next}, $TASKS, { limit => 3, offset => 3 }, 'tasks next');
is_deeply([ map { $_->{pulp_href} } @{ list_all($t, "$TASKS?limit=2") } ], [ reverse @tasks ],
          'walking tasks');
is_deeply([ map { $_->{pulp_href} } @{ list_all($t, "$TASKS?ordering=pulp_created") } ], \@tasks,
          'tasks ordering=pulp_created');

$t->stop;
done_testing;
